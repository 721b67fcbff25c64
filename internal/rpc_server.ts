// An HTTP/2 server that speaks gRPC (Connect's node adapter on node:http2),
// shared by the register and the services: optional TLS, the shared secret,
// a size limit on request messages, and errors mapped to gRPC codes.

import * as http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { serverAuth } from "./auth.ts";
import { toConnectError } from "./rpc_errors.ts";
import type { Logger } from "./logger.ts";
import type { CheckedTls } from "./options.ts";

/** Options of {@linkcode listenRpc}. */
export interface RpcServerOptions {
  readonly hostname: string;
  readonly port: number;
  readonly routes: (router: ConnectRouter) => void;
  /** Calls without this secret are refused. */
  readonly secret?: string | undefined;
  /** Serve over TLS; with `mutual`, require client certificates. */
  readonly tls?: CheckedTls | undefined;
  /**
   * The most bytes one request message may have; a larger one fails the
   * call with `resource_exhausted` before it is read.
   */
  readonly readMaxBytes: number;
  /** Each connection is pinged this often; 0 turns pings off. */
  readonly pingIntervalMs: number;
  /** A connection whose ping is not answered this soon is dropped. */
  readonly pingTimeoutMs: number;
  readonly logger: Logger;
}

/** A listening RPC server. */
export interface RpcServer {
  /** The port it listens on. */
  readonly port: number;
  /**
   * Ends every call (streams end at once, unary calls get `graceMs` to
   * finish), then closes every connection.
   */
  close(graceMs?: number): Promise<void>;
}

/** Starts an RPC server; resolves once it listens. */
export async function listenRpc(options: RpcServerOptions): Promise<RpcServer> {
  const { hostname, port, routes, secret, tls, readMaxBytes, logger } = options;
  const shutdown = new AbortController();
  const interceptors: Interceptor[] = [mapErrors];
  if (secret !== undefined) interceptors.unshift(serverAuth(secret));
  const handler = connectNodeAdapter({
    routes,
    interceptors,
    shutdownSignal: shutdown.signal,
    readMaxBytes,
    connect: false,
    grpcWeb: false,
    grpc: true,
  });
  const server = tls === undefined
    ? http2.createServer({}, handler)
    : http2.createSecureServer({
      cert: tls.cert,
      key: tls.key,
      ...(tls.ca === undefined ? {} : { ca: tls.ca }),
      requestCert: tls.mutual,
      rejectUnauthorized: tls.mutual,
    }, handler);
  server.on("tlsClientError", (error) => {
    logger.debug("rpc TLS handshake failed", { error: String(error) });
  });
  // Every TCP connection, also those that never became an HTTP/2 session
  // (an idle or garbage-sending peer, a TLS handshake in progress): close()
  // must not wait on them.
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    const stopPings = keepAlive(session, options);
    session.on("error", (error) => {
      logger.debug("rpc connection error", { error: String(error) });
    });
    session.on("close", () => {
      stopPings();
      sessions.delete(session);
    });
  });
  server.on("sessionError", (error) => {
    logger.debug("rpc session error", { error: String(error) });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (error) => {
    logger.warn("rpc server error", { error: String(error) });
  });
  const closed = new Promise<void>((resolve) => server.once("close", resolve));
  let closing: Promise<void> | undefined;
  return {
    port: (server.address() as AddressInfo).port,
    close(graceMs = 1000) {
      closing ??= (async () => {
        shutdown.abort();
        server.close();
        for (const session of sessions) session.close();
        const timer = setTimeout(() => {
          for (const session of sessions) session.destroy();
          for (const socket of sockets) socket.destroy();
        }, graceMs);
        await closed;
        clearTimeout(timer);
      })();
      return closing;
    },
  };
}

/** Turns whatever a handler throws, also mid-stream, into a gRPC status. */
const mapErrors: Interceptor = (next) => async (req) => {
  let res;
  try {
    res = await next(req);
  } catch (error) {
    throw toConnectError(error);
  }
  return res.stream ? { ...res, message: mapStreamErrors(res.message) } : res;
};

async function* mapStreamErrors<T>(messages: AsyncIterable<T>) {
  try {
    yield* messages;
  } catch (error) {
    throw toConnectError(error);
  }
}

function keepAlive(
  session: http2.ServerHttp2Session,
  options: Pick<
    RpcServerOptions,
    "pingIntervalMs" | "pingTimeoutMs" | "logger"
  >,
): () => void {
  const { pingIntervalMs, pingTimeoutMs, logger } = options;
  if (pingIntervalMs <= 0) return () => {};
  let timeout: ReturnType<typeof setTimeout> | undefined;
  const interval = setInterval(() => {
    if (timeout !== undefined || session.destroyed) return;
    timeout = setTimeout(() => {
      logger.info("rpc peer did not answer a ping; dropping its connection", {
        timeoutMs: pingTimeoutMs,
      });
      session.destroy();
    }, pingTimeoutMs);
    try {
      session.ping(() => {
        clearTimeout(timeout);
        timeout = undefined;
      });
    } catch {
      // The session is closing.
    }
  }, pingIntervalMs);
  return () => {
    clearInterval(interval);
    clearTimeout(timeout);
  };
}
