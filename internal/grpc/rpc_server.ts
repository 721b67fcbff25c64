// An HTTP/2 server that speaks gRPC (Connect's node adapter on node:http2),
// shared by the register and the services: optional TLS, the shared secret,
// a size limit on request messages, and errors mapped to gRPC codes.

import * as http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AUTH_HEADER, bearerChecker } from "../base/secret.ts";
import { serverAuth } from "./auth.ts";
import { statusTrailers } from "./grpc_frame.ts";
import { toConnectError } from "./grpc_status.ts";
import type { Logger } from "../base/logger.ts";
import type { CheckedTls } from "../base/options.ts";

/** Options of {@linkcode listenRpc}. */
export interface RpcServerOptions {
  readonly hostname: string;
  readonly port: number;
  readonly routes: (router: ConnectRouter) => void;
  /**
   * Methods served without Connect, for the calls they take (see
   * {@linkcode RawGrpcMethod}); the others of the same path go to `routes`.
   */
  readonly rawMethods?: readonly RawGrpcMethod[] | undefined;
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

/** What a {@linkcode RawGrpcMethod} gets besides the request. */
export interface RawCallContext {
  /** The most bytes one request message may have. */
  readonly readMaxBytes: number;
  /** Aborted when the server closes: end the call. */
  readonly signal: AbortSignal;
}

/**
 * A gRPC method served on node:http2 directly, for a hot path where
 * Connect's generic pipeline costs too much. The server hands it only
 * POSTs of `application/grpc` (protobuf) without compression whose secret
 * it checked; everything else on its path goes to Connect's handler.
 */
export interface RawGrpcMethod {
  /** `/package.Service/Method` */
  readonly path: string;
  /** Serves one call; it must end the response. */
  serve(
    req: http2.Http2ServerRequest,
    res: http2.Http2ServerResponse,
    context: RawCallContext,
  ): void;
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
  const route = withRawMethods(handler, options.rawMethods ?? [], {
    readMaxBytes,
    signal: shutdown.signal,
  }, secret);
  const server = tls === undefined
    ? http2.createServer({}, route)
    : http2.createSecureServer({
      cert: tls.cert,
      key: tls.key,
      ...(tls.ca === undefined ? {} : { ca: tls.ca }),
      requestCert: tls.mutual,
      rejectUnauthorized: tls.mutual,
    }, route);
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

type Handler = (
  req: http2.Http2ServerRequest,
  res: http2.Http2ServerResponse,
) => void;

/** Sends the calls `methods` take to them, the others to `fallback`. */
function withRawMethods(
  fallback: Handler,
  methods: readonly RawGrpcMethod[],
  context: RawCallContext,
  secret: string | undefined,
): Handler {
  if (methods.length === 0) return fallback;
  const byPath = new Map(methods.map((method) => [method.path, method]));
  const check = secret === undefined ? undefined : bearerChecker(secret);
  return (req, res) => {
    const method = byPath.get(req.url);
    if (method === undefined || !takesRaw(req)) return fallback(req, res);
    const refused = check?.(req.headers[AUTH_HEADER]);
    if (refused !== undefined) {
      res.writeHead(200, { "content-type": "application/grpc" });
      res.addTrailers(statusTrailers(refused));
      res.end();
      return;
    }
    method.serve(req, res, context);
  };
}

/** Whether a request is plain gRPC: protobuf, no compression. */
function takesRaw(req: http2.Http2ServerRequest): boolean {
  const type = req.headers["content-type"];
  const encoding = req.headers["grpc-encoding"];
  return req.method === "POST" &&
    (type === "application/grpc" || type === "application/grpc+proto") &&
    (encoding === undefined || encoding === "identity");
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
