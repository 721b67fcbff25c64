// One HTTP/2 connection to a register or a peer service, with keepalive
// pings, the shared secret, optional TLS, and a way to close it.

import type * as http2 from "node:http2";
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AUTH_HEADER, authValue } from "../base/secret.ts";
import { clientAuth } from "./auth.ts";
import { formatHostPort, parseHostPort } from "../base/address.ts";
import { Http2Connection } from "./http2_connection.ts";
import type { CheckedTls } from "../base/options.ts";

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
  /** Run on every call, after the secret is added (metrics, for one). */
  readonly interceptors?: readonly Interceptor[] | undefined;
}

/** A lazily opened connection; calls made through `transport` share it. */
export interface RpcChannel {
  readonly address: string;
  readonly transport: Transport;
  /**
   * Opens a plain gRPC call (protobuf, no compression) on the same
   * connection, with the secret, for messages framed by hand
   * (grpc_frame.ts); `path` is `/package.Service/Method`.
   */
  openCall(path: string): Promise<http2.ClientHttp2Stream>;
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
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager: connection,
    ...(options.readMaxBytes === undefined
      ? {}
      : { readMaxBytes: options.readMaxBytes }),
    interceptors: [
      ...(options.secret === undefined ? [] : [clientAuth(options.secret)]),
      ...(options.interceptors ?? []),
    ],
  });
  const headers: http2.OutgoingHttpHeaders = {
    "content-type": "application/grpc",
    te: "trailers",
    ...(options.secret === undefined
      ? {}
      : { [AUTH_HEADER]: authValue(options.secret) }),
  };
  return {
    address,
    transport,
    async openCall(path) {
      const stream = await connection.request("POST", path, headers, {});
      // What arrives proves the connection alive: no ping needed.
      stream.on("data", () => connection.notifyResponseByteRead(stream));
      return stream;
    },
    close: () => connection.close(),
  };
}
