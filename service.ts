/**
 * A gateway service: accepts client WebSockets, gives each a cluster-unique
 * clientId, runs the {@linkcode Application}'s hooks, joins the register,
 * and answers its peers over gRPC so that the {@linkcode Api} reaches every
 * client of the cluster.
 *
 * @module
 */

import type { Api } from "./api.ts";
import type { Application } from "./application.ts";
import { GatewayError } from "./errors.ts";
import { GatewayService } from "./proto/gen/websocket/v1/gateway_pb.ts";
import { ClientIdAllocator, createNodeId } from "./internal/client_id.ts";
import { LocalHub } from "./internal/local_hub.ts";
import { MemberTable } from "./internal/member_table.ts";
import { PeerPool } from "./internal/peer_pool.ts";
import { ClusterApi } from "./internal/cluster_api.ts";
import { createGatewayHandler } from "./internal/gateway_handler.ts";
import { listenRpc } from "./internal/rpc_server.ts";
import { joinRegisters } from "./internal/register_link.ts";
import { WebSocketEndpoint } from "./internal/websocket_endpoint.ts";
import {
  formatHostPort,
  isLoopback,
  parseHostPort,
} from "./internal/address.ts";
import { createLogger, type Logger, type LogLevel } from "./internal/logger.ts";
import {
  checkLogLevel,
  checkNonEmpty,
  checkPort,
  checkPositive,
  checkSecret,
  checkTls,
  onAbort,
} from "./internal/options.ts";
import { type BackoffOptions, sleep } from "./internal/backoff.ts";
import type { TlsOptions } from "./tls.ts";

/** How a service retries a register: capped, jittered, exponential. */
const REGISTER_BACKOFF: BackoffOptions = { minMs: 100, maxMs: 3000 };

/** Options of {@linkcode startService}. */
export interface ServiceOptions {
  /** The register(s) to join, as `"host:port"`; with several, all of them. */
  register: string | readonly string[];
  /**
   * Address the WebSocket server listens on.
   *
   * @default {"0.0.0.0"}
   */
  hostname?: string;
  /**
   * WebSocket port; 0 picks a free one ({@linkcode Service.port} tells).
   *
   * @default {9201}
   */
  port?: number;
  /**
   * Port of the gRPC server that peers and backends call; 0 picks a free one.
   *
   * @default {9101}
   */
  rpcPort?: number;
  /**
   * The address peers dial to reach this service's RPC port.
   *
   * @default {"127.0.0.1"}
   */
  lanIp?: string;
  /**
   * Address the RPC server listens on. Set `"0.0.0.0"` when `lanIp` is not
   * an address of this host (behind NAT).
   *
   * @default {lanIp}
   */
  rpcHostname?: string;
  /**
   * Shared secret of the cluster: sent with every register and peer call
   * (`authorization: Bearer <secret>`), and required from every caller of
   * this service's RPC port, which refuses a call without it with gRPC
   * `UNAUTHENTICATED`. When every register refuses it, `startService`
   * rejects with a `GatewayError` whose code is `unauthenticated`.
   *
   * @default {undefined (no check)}
   */
  secret?: string;
  /**
   * Serve the RPC port over TLS, and dial registers and peers over TLS (see
   * {@linkcode TlsOptions}); with `mutual`, also require and present client
   * certificates.
   *
   * @default {undefined (plaintext HTTP/2)}
   */
  tls?: TlsOptions;
  /** Closes the service when aborted. */
  signal?: AbortSignal;
  /**
   * How long one call to a peer may take, in milliseconds. A peer that does
   * not answer in time is reported as failed (see
   * {@linkcode IncompleteResultError}).
   *
   * @default {2000}
   */
  deadlineMs?: number;
  /**
   * How long `startService` waits for the first member list before it
   * resolves anyway (it keeps trying to join in the background).
   *
   * @default {5000}
   */
  joinTimeoutMs?: number;
  /**
   * Register and peer connections are pinged this often, in milliseconds;
   * one that does not answer within `2 × pingIntervalMs` is dropped.
   *
   * @default {1000}
   */
  pingIntervalMs?: number;
  /**
   * Bytes of deliveries that may wait for one peer; past it, sends to that
   * peer fail at once with `unavailable` until it catches up. It also caps
   * one message sent through the {@linkcode Api}: a larger one is refused
   * with `invalid_argument`, and the RPC port refuses requests of more
   * than four times this many bytes.
   *
   * @default {16777216}
   */
  maxPeerQueueBytes?: number;
  /**
   * How much to log on stderr.
   *
   * @default {"info"}
   */
  logLevel?: LogLevel;
}

/** A running service, from {@linkcode startService}. */
export interface Service extends AsyncDisposable {
  /** The cluster-wide Api. */
  readonly api: Api;
  /** This service's node id: the prefix of its clients' ids. */
  readonly nodeId: string;
  /** The address the WebSocket server listens on. */
  readonly hostname: string;
  /** The WebSocket port. */
  readonly port: number;
  /** Where peers reach this service's RPC server, `lanIp:rpcPort`. */
  readonly rpcAddress: string;
  /**
   * Stops the service: leaves the registers, closes every client with 1001
   * (going away), then stops the RPC server.
   */
  close(): Promise<void>;
}

/**
 * Starts a service of `app`: a WebSocket server, an RPC server, and the
 * membership in the cluster. Resolves when both servers listen and the
 * first member list arrived (or `joinTimeoutMs` passed).
 *
 * @example A service with one client-facing hook
 * ```ts
 * import assert from "node:assert/strict";
 * import { startRegister, startService } from "./mod.ts";
 *
 * await using register = await startRegister({ hostname: "127.0.0.1", port: 0 });
 * await using service = await startService({
 *   onConnect(clientId, { api }) {
 *     return api.sendToClient(clientId, "hello");
 *   },
 * }, {
 *   register: `127.0.0.1:${register.port}`,
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   rpcPort: 0,
 * });
 * const socket = new WebSocket(`ws://127.0.0.1:${service.port}/`);
 * const first = await new Promise((resolve) => socket.onmessage = (e) => resolve(e.data));
 * assert.equal(first, "hello");
 * socket.close();
 * await new Promise((resolve) => socket.onclose = resolve);
 * ```
 *
 * @param app The business code's hooks.
 * @param options The register(s) to join, ports, secret and limits.
 * @returns The running service.
 */
export async function startService(
  app: Application,
  options: ServiceOptions,
): Promise<Service> {
  const {
    hostname = "0.0.0.0",
    port = 9201,
    rpcPort = 9101,
    lanIp = "127.0.0.1",
    signal,
    deadlineMs = 2000,
    joinTimeoutMs = 5000,
    pingIntervalMs = 1000,
    maxPeerQueueBytes = 16 * 1024 * 1024,
    logLevel = "info",
  } = options;
  const registers = typeof options.register === "string"
    ? [options.register]
    : [...options.register];
  if (registers.length === 0) {
    throw new TypeError(
      "Cannot start: 'register' must name at least one register: current value is []",
    );
  }
  for (const r of registers) {
    try {
      parseHostPort(r, "register address");
    } catch (error) {
      throw new TypeError(
        `Cannot start: 'register' must be "host:port" or a list of them: current value is ${
          JSON.stringify(r)
        }`,
        { cause: error },
      );
    }
  }
  checkPort("port", port);
  checkPort("rpcPort", rpcPort);
  checkNonEmpty("lanIp", lanIp);
  const rpcHostname = options.rpcHostname ?? lanIp;
  checkPositive("deadlineMs", deadlineMs);
  checkPositive("joinTimeoutMs", joinTimeoutMs);
  checkPositive("pingIntervalMs", pingIntervalMs);
  checkPositive("maxPeerQueueBytes", maxPeerQueueBytes);
  const secret = checkSecret(options.secret);
  const tls = checkTls(options.tls);
  const nodeId = createNodeId();
  const logger = createLogger(`service ${nodeId}`, checkLogLevel(logLevel));
  signal?.throwIfAborted();
  if (secret === undefined && !tls?.mutual && !isLoopback(rpcHostname)) {
    logger.warn(
      "RPC port listens beyond loopback without a secret: any host that reaches it can push to every client; set a secret",
      { rpcHostname },
    );
  }

  const hub = new LocalHub();
  const members = new MemberTable(nodeId, {
    settleMs: 2 * REGISTER_BACKOFF.maxMs,
  });
  const readMaxBytes = 4 * maxPeerQueueBytes;
  const peers = new PeerPool({
    secret,
    tls,
    readMaxBytes,
    pingIntervalMs,
    pingTimeoutMs: 2 * pingIntervalMs,
    maxQueuedBytes: maxPeerQueueBytes,
    deadlineMs,
  });
  members.onChange(() => peers.retain(members.peerAddresses()));
  const api = new ClusterApi({
    nodeId,
    hub,
    members,
    peers,
    deadlineMs,
    maxMessageBytes: maxPeerQueueBytes,
  });
  const endpoint = new WebSocketEndpoint({
    app,
    api,
    hub,
    ids: new ClientIdAllocator(nodeId),
    logger,
  });

  const rpc = await listenRpc({
    hostname: rpcHostname,
    port: rpcPort,
    secret,
    tls,
    readMaxBytes,
    pingIntervalMs,
    pingTimeoutMs: 2 * pingIntervalMs,
    logger,
    routes: (router) =>
      router.service(GatewayService, createGatewayHandler(nodeId, hub, api)),
  });
  const rpcAddress = formatHostPort(lanIp, rpc.port);

  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve(
      {
        hostname,
        port,
        onListen: () => {},
        onError: (error) => {
          logger.error("request failed", { error: String(error) });
          return new Response("internal error\n", { status: 500 });
        },
      },
      (request) =>
        WebSocketEndpoint.isUpgrade(request)
          ? endpoint.upgrade(request)
          : new Response(
            "This is a wsgate service: connect with a WebSocket.\n",
            {
              status: 426,
              headers: { upgrade: "websocket" },
            },
          ),
    );
  } catch (error) {
    await rpc.close();
    throw error;
  }

  const links = joinRegisters(registers, {
    member: { nodeId, rpcAddress },
    table: members,
    secret,
    tls,
    pingIntervalMs,
    pingTimeoutMs: 2 * pingIntervalMs,
    backoff: REGISTER_BACKOFF,
    logger,
  });
  const stopGuard = guardUnhandledRejections(logger);

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      stopWatching();
      await links.close();
      endpoint.closeAll(1001, "service is going away");
      await waitUntil(() => endpoint.size === 0, 2000);
      await server.shutdown();
      // Outgoing connections first: a peer closing at the same moment then
      // sees its server's connections end instead of waiting for them.
      peers.close();
      members.close();
      await rpc.close();
      stopGuard();
      logger.info("service stopped");
    })();
    return closing;
  };
  const stopWatching = onAbort(signal, close);

  const stopWaiting = new AbortController();
  const joined = await Promise.race([
    links.joined,
    sleep(
      joinTimeoutMs,
      AbortSignal.any([
        stopWaiting.signal,
        ...(signal === undefined ? [] : [signal]),
      ]),
    ).then(() => false as const),
  ]);
  stopWaiting.abort();
  if (joined instanceof GatewayError) {
    logger.error("no register accepted this service; stopping", {
      error: joined.message,
    });
    await close();
    throw joined;
  }
  if (joined === false) {
    logger.warn("no register answered yet; still trying in the background", {
      registers: registers.join(","),
      waitedMs: joinTimeoutMs,
    });
  }
  logger.info("service started", {
    websocket: formatHostPort(hostname, server.addr.port),
    rpc: rpcAddress,
  });
  return {
    api,
    nodeId,
    hostname,
    port: server.addr.port,
    rpcAddress,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Resolves when `done()` holds, or after `ms`. */
async function waitUntil(done: () => boolean, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!done() && Date.now() < until) await sleep(10);
}

let guards = 0;
let guardLogger: Logger | undefined;

function onUnhandledRejection(event: PromiseRejectionEvent): void {
  if (!(event.reason instanceof GatewayError)) return;
  event.preventDefault();
  guardLogger?.warn("an Api call failed and nobody awaited it", {
    error: event.reason.message,
  });
}

/**
 * Api calls made without `await` (fire and forget) must not crash the
 * process when a peer fails: their GatewayErrors are logged instead.
 */
function guardUnhandledRejections(logger: Logger): () => void {
  if (guards++ === 0) {
    globalThis.addEventListener("unhandledrejection", onUnhandledRejection);
  }
  guardLogger = logger;
  return () => {
    if (--guards === 0) {
      globalThis.removeEventListener(
        "unhandledrejection",
        onUnhandledRejection,
      );
      guardLogger = undefined;
    }
  };
}
