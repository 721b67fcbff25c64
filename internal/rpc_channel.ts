// One HTTP/2 connection to a register or a peer service, with keepalive
// pings, the shared secret, optional TLS, and a way to close it.

import type * as http2 from "node:http2";
import type { Transport } from "@connectrpc/connect";
import {
  createGrpcTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import { clientAuth } from "./auth.ts";
import { formatHostPort, parseHostPort } from "./address.ts";
import type { CheckedTls } from "./options.ts";

/** Options of {@linkcode openRpcChannel}. */
export interface RpcChannelOptions {
  readonly secret?: string | undefined;
  /** Dial over TLS with these: trust `ca`, present `cert` when asked. */
  readonly tls?: CheckedTls | undefined;
  /** Ping the connection this often while it carries calls. */
  readonly pingIntervalMs: number;
  /** Drop the connection when a ping is not answered this soon. */
  readonly pingTimeoutMs: number;
  /**
   * The most bytes one response message may have; a larger one fails the
   * call with `resource_exhausted`.
   */
  readonly readMaxBytes?: number;
}

/** A lazily opened connection; calls made through `transport` share it. */
export interface RpcChannel {
  readonly address: string;
  readonly transport: Transport;
  /** Closes the connection and fails its open calls. */
  close(): void;
}

/** Makes a channel to `address` (`host:port`); connects on the first call. */
export function openRpcChannel(
  address: string,
  options: RpcChannelOptions,
): RpcChannel {
  const { host, port } = parseHostPort(address, "RPC address");
  const { tls } = options;
  const baseUrl = `${tls === undefined ? "http" : "https"}://${
    formatHostPort(host, port)
  }`;
  const sessionManager = new GuardedSessionManager(
    baseUrl,
    {
      pingIntervalMs: options.pingIntervalMs,
      pingTimeoutMs: options.pingTimeoutMs,
      pingIdleConnection: false,
    },
    tls === undefined ? {} : {
      cert: tls.cert,
      key: tls.key,
      ...(tls.ca === undefined ? {} : { ca: tls.ca }),
    },
  );
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager,
    ...(options.readMaxBytes === undefined
      ? {}
      : { readMaxBytes: options.readMaxBytes }),
    interceptors: options.secret === undefined
      ? []
      : [clientAuth(options.secret)],
  });
  return {
    address,
    transport,
    close: () => sessionManager.abort(),
  };
}

/**
 * Keeps an error listener on every session for its whole life. Connect's
 * session manager removes its own listener when a session leaves its
 * "ready" state, and Deno's node:http2 may emit one more error after that
 * (seen when a mutual-TLS server rejects the client certificate after the
 * client finished its side of the TLS 1.3 handshake); without a listener
 * that error would be thrown as uncaught and end the process. The call that
 * hit it has already failed with the same error.
 */
class GuardedSessionManager extends Http2SessionManager {
  readonly #guarded = new WeakSet<http2.Http2Session>();

  override async request(
    method: string,
    path: string,
    headers: http2.OutgoingHttpHeaders,
    options: Omit<http2.ClientSessionRequestOptions, "signal">,
  ): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(method, path, headers, options);
    const session = stream.session;
    if (session !== undefined && !this.#guarded.has(session)) {
      this.#guarded.add(session);
      session.on("error", ignore);
    }
    return stream;
  }
}

function ignore(): void {}
