// One HTTP/2 connection to a register or a peer service, with keepalive
// pings, node proofs of the shared secret (never the secret itself),
// optional TLS, and a way to close it.

import type * as http2 from "node:http2";
import type { Interceptor, Transport } from "npm:@connectrpc/connect@2.2.0";
import { createGrpcTransport } from "npm:@connectrpc/connect-node@2.2.0";
import { NodeAuthService } from "../../proto/gen/websocket/v1/node_auth_pb.ts";
import { AUTH_HEADER } from "../base/secret.ts";
import { peerBinding, REGISTER_BINDING } from "../base/node_proof.ts";
import type { Logger } from "../base/logger.ts";
import { clientAuth } from "./auth.ts";
import { NodeCredentials } from "./node_credentials.ts";
import { RENEW, RENEW_HEADER } from "./rpc_auth.ts";
import { formatHostPort, parseHostPort } from "../base/address.ts";
import { Http2Connection } from "./http2_connection.ts";
import type { CheckedTls } from "../base/options.ts";

/** Options of {@linkcode openRpcChannel}. */
export interface RpcChannelOptions {
  /**
   * The cluster secret: calls carry proofs of it (internal/base/
   * node_proof.ts), and the node dialed must prove it too.
   */
  readonly secret?: string | undefined;
  /**
   * What the node dialed is: a peer service, whose proofs are bound to the
   * address dialed, or a register, whose proofs are not, and which may run
   * without a secret (with a warning).
   *
   * @default {"peer"}
   */
  readonly role?: "peer" | "register" | undefined;
  /** Warns about a register without a secret. */
  readonly logger?: Logger | undefined;
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
  /** Run on every call, after the secret is added (metrics, for one). */
  readonly interceptors?: readonly Interceptor[] | undefined;
}

/** A lazily opened connection; calls made through `transport` share it. */
export interface RpcChannel {
  readonly address: string;
  readonly transport: Transport;
  /**
   * Opens a plain gRPC call (protobuf, no compression) on the same
   * connection, with the node proof, for messages framed by hand
   * (grpc_frame.ts); `path` is `/package.Service/Method`, and `headers`
   * go with the call's own.
   */
  openCall(
    path: string,
    headers?: Readonly<Record<string, string>>,
  ): Promise<http2.ClientHttp2Stream>;
  /**
   * The node proof that calls on this channel carry (the value of
   * `authorization`, `WsgateNode <nonce>.<proof>`); undefined without a
   * secret. The delivery port of the same peer takes it too.
   */
  authorization(): Promise<string | undefined>;
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
  const connection = new Http2Connection(baseUrl, {
    pingIntervalMs: options.pingIntervalMs,
    pingTimeoutMs: options.pingTimeoutMs,
    sessionOptions: tls === undefined ? {} : {
      cert: tls.cert,
      key: tls.key,
      ...(tls.ca === undefined ? {} : { ca: tls.ca }),
    },
  });
  const { secret, role = "peer", logger } = options;
  const credentials = secret === undefined ? undefined : new NodeCredentials({
    secret,
    binding: role === "register" ? REGISTER_BINDING : peerBinding(address),
    name: role === "register" ? "the register" : "the service",
    allowUnsecured: role === "register",
    onUnsecured: () =>
      logger?.warn(
        "register runs without a secret: anyone who reaches it can join the cluster and be dialed by every service; give it the same secret as the services",
        { register: address },
      ),
    timeoutMs: Math.max(1000, options.pingTimeoutMs),
    // The transport below, without a proof: the challenge is how to get one.
    ask: async (clientNonce, signal) =>
      (await transport.unary(
        NodeAuthService.method.challenge,
        signal,
        undefined,
        undefined,
        { clientNonce },
      )).message,
  });
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager: connection,
    ...(options.readMaxBytes === undefined
      ? {}
      : { readMaxBytes: options.readMaxBytes }),
    interceptors: [
      ...(credentials === undefined ? [] : [clientAuth(credentials)]),
      ...(options.interceptors ?? []),
    ],
  });
  const authorization = () =>
    credentials?.authorization() ?? Promise.resolve(undefined);
  return {
    address,
    transport,
    async openCall(path, headers) {
      const value = await authorization();
      const stream = await connection.request("POST", path, {
        ...headers,
        "content-type": "application/grpc",
        te: "trailers",
        ...(value === undefined ? {} : { [AUTH_HEADER]: value }),
      }, {});
      // What arrives proves the connection alive: no ping needed.
      stream.on("data", () => connection.notifyResponseByteRead(stream));
      // Refused for an old nonce: the next call asks for a new one.
      stream.once("response", (headers) => {
        if (value !== undefined && headers[RENEW_HEADER] === RENEW) {
          credentials?.renew(value);
        }
      });
      return stream;
    },
    authorization,
    close: () => connection.close(),
  };
}
