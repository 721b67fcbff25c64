/**
 * TLS for the gRPC ports of registers and services: {@linkcode TlsOptions}.
 *
 * @module
 */

/**
 * TLS (and optionally mutual TLS) for register and peer RPC. Give the same
 * `ca` to every node of a cluster, and each node a certificate signed by it
 * whose subject alternative names cover the address others dial: the
 * register's `host` as services are told it, a service's `lanIp`.
 *
 * With TLS on, a node serves its RPC port over TLS only and dials registers
 * and peers over TLS only, so every node of a cluster must use TLS. With
 * `mutual`, a server also requires a client certificate signed by `ca`: a
 * caller without one cannot even complete the handshake, secret or not.
 *
 * @example TLS options read from files
 * ```ts ignore
 * import { startRegister, type TlsOptions } from "./mod.ts";
 *
 * const tls: TlsOptions = {
 *   cert: await Deno.readTextFile("node.pem"),
 *   key: await Deno.readTextFile("node.key"),
 *   ca: await Deno.readTextFile("ca.pem"),
 *   mutual: true,
 * };
 * await using register = await startRegister({ port: 0, tls });
 * ```
 */
export interface TlsOptions {
  /**
   * This node's certificate chain, PEM. Its server presents it; with
   * `mutual`, it also presents it as a client certificate when it calls a
   * register or peer.
   */
  cert: string;
  /** The private key of `cert`, PEM. */
  key: string;
  /**
   * The certificate authorities to trust, PEM: a node accepts a register or
   * peer only with a certificate one of them signed (and, with `mutual`, a
   * caller only with such a client certificate).
   *
   * @default {the runtime's built-in root certificates}
   */
  ca?: string;
  /**
   * Mutual TLS: servers require a client certificate signed by `ca`, and
   * clients present `cert`. Needs `ca`.
   *
   * @default {false}
   */
  mutual?: boolean;
}
