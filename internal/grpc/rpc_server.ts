// An HTTP/2 server that speaks gRPC (Connect's node adapter on node:http2),
// shared by the register and the services: optional TLS, callers checked
// from the request headers before any byte of a body is read (rpc_auth.ts),
// the challenge that nodes prove the secret over, size limits on request
// messages, and errors mapped to gRPC codes.

import * as http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import type { DescMethod } from "npm:@bufbuild/protobuf@2.17.0";
import {
  type ConnectRouter,
  createContextValues,
  type Interceptor,
} from "npm:@connectrpc/connect@2.2.0";
import type { UniversalHandlerOptions } from "npm:@connectrpc/connect@2.2.0/protocol";
import { connectNodeAdapter } from "npm:@connectrpc/connect-node@2.2.0";
import { NodeAuthService } from "../../proto/gen/websocket/v1/node_auth_pb.ts";
import { AUTH_HEADER } from "../base/secret.ts";
import type { ProofRefusal } from "../base/node_verifier.ts";
import {
  CALLER,
  type Caller,
  RENEW,
  RENEW_HEADER,
  type RpcAuth,
} from "./rpc_auth.ts";
import { statusTrailers } from "./grpc_frame.ts";
import { toConnectError } from "./grpc_status.ts";
import type { Logger } from "../base/logger.ts";
import type { CheckedTls } from "../base/options.ts";
import {
  DEFAULT_OPTION_NAMES,
  type ListenOptionNames,
  toListenError,
} from "../base/listen_error.ts";

/** A challenge request is a nonce of at most 64 bytes: room for that. */
const CHALLENGE_READ_MAX_BYTES = 256;

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
  /**
   * Checks every call but the challenge before its body is read (see
   * rpc_auth.ts); unset, anyone may call.
   */
  readonly auth?: RpcAuth | undefined;
  /** Serve over TLS; with `mutual`, require client certificates. */
  readonly tls?: CheckedTls | undefined;
  /**
   * The most bytes the request of a unary or server-streaming call may
   * have; a larger one fails the call with `resource_exhausted` before it
   * is read.
   */
  readonly readMaxBytes: number;
  /**
   * The same for each message of a client-streaming or bidirectional call
   * (the Deliver stream: one batch per message).
   *
   * @default {readMaxBytes}
   */
  readonly streamReadMaxBytes?: number | undefined;
  /** Each connection is pinged this often; 0 turns pings off. */
  readonly pingIntervalMs: number;
  /** A connection whose ping is not answered this soon is dropped. */
  readonly pingTimeoutMs: number;
  readonly logger: Logger;
  /**
   * The options that set `port` and `hostname`, as a failure to listen
   * names them (see internal/base/listen_error.ts).
   *
   * @default {DEFAULT_OPTION_NAMES}
   */
  readonly optionNames?: ListenOptionNames | undefined;
}

/** What a {@linkcode RawGrpcMethod} gets besides the request. */
export interface RawCallContext {
  /** The most bytes one request message may have (`streamReadMaxBytes`). */
  readonly readMaxBytes: number;
  /** Aborted when the server closes: end the call. */
  readonly signal: AbortSignal;
}

/**
 * A gRPC method served on node:http2 directly, for a hot path where
 * Connect's generic pipeline costs too much. The server hands it only
 * POSTs of `application/grpc` (protobuf) without compression whose caller
 * it let in; everything else on its path goes to Connect's handler.
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

/**
 * Starts an RPC server; resolves once it listens. Rejects with a
 * `ListenError` when the port is in use or the address is not this
 * machine's.
 */
export async function listenRpc(options: RpcServerOptions): Promise<RpcServer> {
  const { hostname, port, routes, auth, tls, readMaxBytes, logger } = options;
  const { streamReadMaxBytes = readMaxBytes } = options;
  const shutdown = new AbortController();
  /** Who made each call that was let in, for the handlers (CALLER). */
  const callers = new WeakMap<object, Caller>();
  const handler = connectNodeAdapter({
    routes: (router) => {
      const limited = limitedRouter(router, readMaxBytes, streamReadMaxBytes);
      limited.rpc(NodeAuthService.method.challenge, (request) => {
        if (auth === undefined) return { nonce: "", proof: "", ttlMs: 0 };
        return auth.verifier.challenge(request.clientNonce);
      }, { readMaxBytes: CHALLENGE_READ_MAX_BYTES });
      routes(limited);
    },
    interceptors: [mapErrors],
    contextValues: (req) =>
      createContextValues().set(CALLER, callers.get(req) ?? "node"),
    shutdownSignal: shutdown.signal,
    readMaxBytes,
    ...PROTOCOLS,
  });
  const route = withAuth(
    withRawMethods(handler, options.rawMethods ?? [], {
      readMaxBytes: streamReadMaxBytes,
      signal: shutdown.signal,
    }),
    auth,
    callers,
    // What a legal request may have: its client gets to read the refusal.
    readMaxBytes,
  );
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
    const fail = (error: unknown) =>
      reject(
        toListenError(
          error,
          hostname,
          port,
          options.optionNames ?? DEFAULT_OPTION_NAMES,
        ),
      );
    server.once("error", fail);
    server.listen(port, hostname, () => {
      server.off("error", fail);
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

/** Connect serves gRPC only. */
const PROTOCOLS = { grpc: true, grpcWeb: false, connect: false } as const;

/**
 * A router that registers each method with the read limit of its kind:
 * `unary` for the one request of unary and server-streaming calls,
 * `stream` for each message of the others.
 */
function limitedRouter(
  router: ConnectRouter,
  unary: number,
  stream: number,
): ConnectRouter {
  const limitOf = (method: DescMethod) =>
    method.methodKind === "unary" || method.methodKind === "server_streaming"
      ? unary
      : stream;
  return {
    handlers: router.handlers,
    service(service, implementation, options) {
      const impls = implementation as Record<string, unknown>;
      for (const method of service.methods) {
        const impl = impls[method.localName];
        // Left out, a method answers UNIMPLEMENTED (HTTP 404).
        if (impl === undefined) continue;
        this.rpc(method, impl as Parameters<ConnectRouter["rpc"]>[1], options);
      }
      return this;
    },
    rpc(method, impl, options?: Partial<UniversalHandlerOptions>) {
      router.rpc(method, impl, {
        ...PROTOCOLS,
        readMaxBytes: limitOf(method),
        ...options,
      });
      return this;
    },
  };
}

/**
 * Lets in the calls whose caller `auth` accepts, and remembers who made
 * them; refuses the others before a byte of their body is read.
 */
function withAuth(
  next: Handler,
  auth: RpcAuth | undefined,
  callers: WeakMap<object, Caller>,
  maxDrainedBytes: number,
): Handler {
  if (auth === undefined) return next;
  return (req, res) => {
    const header = req.headers[AUTH_HEADER];
    const caller = auth.check(
      req.url,
      typeof header === "string" ? header : undefined,
    );
    if (typeof caller !== "string") {
      return refuseUnread(req, res, caller, maxDrainedBytes);
    }
    callers.set(req, caller);
    next(req, res);
  };
}

/**
 * Ends a call with `refusal` in a trailers-only response, without reading
 * its body: what the client goes on sending is dropped as it arrives, up to
 * `maxDrainedBytes` (so that a client with a request of a legal size gets
 * to its end and reads the status; Deno's client reports a reset stream
 * instead when it is cut off while it still writes), then the stream is
 * reset and the client stops.
 */
function refuseUnread(
  req: http2.Http2ServerRequest,
  res: http2.Http2ServerResponse,
  refusal: ProofRefusal,
  maxDrainedBytes: number,
): void {
  const stream = res.stream;
  try {
    stream.respond({
      ":status": 200,
      "content-type": "application/grpc",
      ...statusTrailers(refusal.error),
      ...(refusal.renew ? { [RENEW_HEADER]: RENEW } : {}),
    }, { endStream: true });
  } catch {
    // The client went away already.
    return;
  }
  let drained = 0;
  req.on("data", (chunk: Uint8Array) => {
    drained += chunk.length;
    // CANCEL rather than NO_ERROR: Deno's client waits forever on a stream
    // reset with NO_ERROR while it still has a body to send.
    if (drained > maxDrainedBytes) stream.close(http2.constants.NGHTTP2_CANCEL);
  });
  req.on("error", () => {});
}

/** Sends the calls `methods` take to them, the others to `fallback`. */
function withRawMethods(
  fallback: Handler,
  methods: readonly RawGrpcMethod[],
  context: RawCallContext,
): Handler {
  if (methods.length === 0) return fallback;
  const byPath = new Map(methods.map((method) => [method.path, method]));
  return (req, res) => {
    const method = byPath.get(req.url);
    if (method === undefined || !takesRaw(req)) return fallback(req, res);
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
