// One HTTP/2 connection to a register or a peer service, with keepalive
// pings, the shared secret, and a way to close it.

import type { Interceptor, Transport } from "@connectrpc/connect";
import {
  createGrpcTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import { clientAuth } from "./auth.ts";
import { formatHostPort, parseHostPort } from "./address.ts";

/** Options of {@linkcode openRpcChannel}. */
export interface RpcChannelOptions {
  readonly secret?: string | undefined;
  /** Ping the connection this often while it carries calls. */
  readonly pingIntervalMs: number;
  /** Drop the connection when a ping is not answered this soon. */
  readonly pingTimeoutMs: number;
  /** Run on every call, after the secret is added (metrics, for one). */
  readonly interceptors?: readonly Interceptor[] | undefined;
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
  const baseUrl = `http://${formatHostPort(host, port)}`;
  const sessionManager = new Http2SessionManager(baseUrl, {
    pingIntervalMs: options.pingIntervalMs,
    pingTimeoutMs: options.pingTimeoutMs,
    pingIdleConnection: false,
  });
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager,
    interceptors: [
      ...(options.secret === undefined ? [] : [clientAuth(options.secret)]),
      ...(options.interceptors ?? []),
    ],
  });
  return {
    address,
    transport,
    close: () => sessionManager.abort(),
  };
}
