// Starting a service: the parts of a service, put together in order, and
// the handle that stops them.

import type { Api } from "../../api.ts";
import type { Application, Context } from "../../application.ts";
import { GatewayError } from "../../errors.ts";
import { GatewayService } from "../../proto/gen/websocket/v1/gateway_pb.ts";
import { ClientIdAllocator, createNodeId } from "../hub/client_id.ts";
import { LocalHub } from "../hub/local_hub.ts";
import { MemberTable } from "../membership/member_table.ts";
import { PeerPool } from "../rpc/peer_pool.ts";
import { createClusterApi } from "../cluster/cluster_api.ts";
import { HolderAnnouncer } from "../cluster/holder_announcer.ts";
import { HolderIndex } from "../cluster/holder_index.ts";
import type { ReceiverOptions } from "../delivery/receiver.ts";
import { NewestConnections } from "../delivery/newest_connections.ts";
import { BACKEND_PATHS, createGatewayService } from "../rpc/gateway_service.ts";
import { createPeerHandlers } from "../rpc/peer_handler.ts";
import { createBackendHandlers } from "../rpc/backend_handler.ts";
import { listenRpc, type RpcServer } from "../grpc/rpc_server.ts";
import { createRpcAuth } from "../grpc/rpc_auth.ts";
import { maxRequestBytes } from "../api/request_size.ts";
import { type HttpServer, listenHttp } from "../http/http_server.ts";
import { deliverEndpoint } from "../delivery/grpc_endpoint.ts";
import {
  type DeliveryPort,
  listenDeliveryPort,
} from "../delivery/port_listener.ts";
import { joinRegisters } from "../membership/register_link.ts";
import { WebSocketEndpoint } from "./websocket_endpoint.ts";
import { SessionStore } from "../session/session_store.ts";
import { Takeovers } from "../session/takeover.ts";
import { ClientMoves } from "../cluster/client_moves.ts";
import { formatHostPort, isLoopback } from "../base/address.ts";
import { createLogger, errorText } from "../base/logger.ts";
import { onAbort } from "../base/options.ts";
import {
  resolveServiceOptions,
  type ServiceOptions,
} from "./service_options.ts";
import { RejectionGuard } from "./rejection_guard.ts";
import { shutDownService } from "./shutdown.ts";
import { sleep } from "../base/backoff.ts";
import { formatServiceMetrics, ServiceMetrics } from "../ops/metrics.ts";
import { createMeteredApi } from "../api/metered_api.ts";
import { maxPeerAnswerBytes } from "../api/answer_size.ts";
import { timeUnaryCalls } from "../grpc/rpc_timing.ts";
import { createHttpApi } from "../ops/http_api.ts";
import { createServiceHandler } from "./service_handler.ts";
import { ApplicationSlot } from "./application_slot.ts";
import { memberFigures } from "./member_figures.ts";
import type { BackoffOptions } from "../base/backoff.ts";

/**
 * How long sends to a moved clientId go to its new one when recovery is
 * off (then only sessions of other services come here, never from here).
 */
const DEFAULT_FORWARD_MS = 120_000;

/** How a service retries a register: capped, jittered, exponential. */
const REGISTER_BACKOFF: BackoffOptions = { minMs: 100, maxMs: 3000 };

/**
 * A running service, from {@linkcode startService}.
 *
 * @example Its ports, and a graceful close
 * ```ts
 * import assert from "node:assert/strict";
 * import { startRegister, startService } from "@wsgate/gateway";
 *
 * await using register = await startRegister({ hostname: "127.0.0.1", port: 0 });
 * const service = await startService({}, {
 *   register: `127.0.0.1:${register.port}`,
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   rpcPort: 0,
 * });
 * assert.ok(service.port > 0);
 * assert.equal(service.rpcAddress.split(":")[0], "127.0.0.1");
 * const socket = new WebSocket(`ws://127.0.0.1:${service.port}/`);
 * await new Promise((resolve) => socket.onopen = resolve);
 * const closed = new Promise<CloseEvent>((resolve) => socket.onclose = resolve);
 * await service.close();
 * assert.equal((await closed).code, 1001);
 * ```
 */
export interface Service extends AsyncDisposable {
  /** The cluster-wide Api. */
  readonly api: Api;
  /** This service's node id: the prefix of its clients' ids. */
  readonly nodeId: string;
  /** {@linkcode ServiceOptions.name}, or the node id when it is unset. */
  readonly name: string;
  /**
   * The address the WebSocket server listens on; `""` when the service has
   * no port of its own (`port: false`).
   */
  readonly hostname: string;
  /**
   * The WebSocket port; 0 when the service has no port of its own
   * (`port: false`): its clients then come through
   * {@linkcode Service.handler}.
   */
  readonly port: number;
  /** Where peers reach this service's RPC server, `lanIp:rpcPort`. */
  readonly rpcAddress: string;
  /**
   * The port peers deliver batches to (see `ServiceOptions.deliveryPort`);
   * undefined when there is none.
   */
  readonly deliveryPort: number | undefined;
  /**
   * Stops the service gracefully, within about `shutdownTimeoutMs`: leaves
   * the registers, stops accepting clients, closes every client with 1001
   * (going away) after what is queued for it, waits for the clients' close
   * handshakes and `onClose` hooks, runs `onStop`, waits until deliveries
   * queued for peers are acknowledged, then stops the WebSocket and RPC
   * servers. Aborting `signal` does the same. Calling it again returns the
   * same promise.
   */
  close(): Promise<void>;
  /**
   * Answers a request of the application's own HTTP server (`Deno.serve`,
   * Hono, ...) as the service's port would: a WebSocket upgrade, on any
   * path, becomes a client of this service, with the same origin check,
   * `onHandshake`, limits, heartbeat, metrics and graceful close (`close`
   * closes these clients with 1001 too and waits for them); `GET /healthz`,
   * `GET /metrics`, the HTTP API (`/api/*`, with `httpApiSecret`) and
   * `fetch` answer as on the port. Route to it only what it should answer.
   * It works with `port: false` and beside a port of the service's own.
   * `info` is what `Deno.serve` passes its handler (Hono: `c.env`); its
   * `remoteAddr` is what `onHandshake` sees. docs/mounting.md says which
   * protections of the own port belong to the application's server then.
   *
   * @example A service inside the application's own Deno.serve
   * ```ts
   * import assert from "node:assert/strict";
   * import { startRegister, startService } from "@wsgate/gateway";
   *
   * const connected: string[] = [];
   * await using register = await startRegister({ hostname: "127.0.0.1", port: 0 });
   * await using service = await startService({
   *   onConnect(clientId) {
   *     connected.push(clientId);
   *   },
   * }, {
   *   register: `127.0.0.1:${register.port}`,
   *   port: false,
   *   rpcPort: 0,
   * });
   * assert.equal(service.port, 0);
   * const server = Deno.serve(
   *   { hostname: "127.0.0.1", port: 0, onListen() {} },
   *   (request, info) => {
   *     const path = new URL(request.url).pathname;
   *     return path === "/ws" || path === "/healthz"
   *       ? service.handler(request, info)
   *       : new Response("the application's own page");
   *   },
   * );
   * const socket = new WebSocket(`ws://127.0.0.1:${server.addr.port}/ws`);
   * await new Promise((resolve) => socket.onopen = resolve);
   * while (connected.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
   * assert.match(connected[0]!, new RegExp(`^${service.nodeId}\\.`));
   * const health = await fetch(`http://127.0.0.1:${server.addr.port}/healthz`);
   * assert.equal((await health.json()).status, "ready");
   * const closed = new Promise<CloseEvent>((resolve) => socket.onclose = resolve);
   * await service.close();
   * assert.equal((await closed).code, 1001);
   * await server.shutdown();
   * ```
   *
   * @param request The request, unread.
   * @param info The connection it came on.
   * @returns The answer: the 101 of the upgrade, or an HTTP response.
   */
  readonly handler: (
    request: Request,
    info: Pick<Deno.ServeHandlerInfo, "remoteAddr">,
  ) => Promise<Response>;
  /**
   * Replaces the application's hooks while every client stays connected
   * (hot reload; docs/hot_reload.md). Runs `app.onStart`, then swaps: each
   * hook call from then on runs on `app`. A client's hooks still run one
   * after another: one that is running finishes on the old application,
   * the next one of that client runs on the new one (its `onClose` too,
   * when its `onConnect` ran on the old one). Once the calls still running
   * on the old application settled (waited for at most
   * `shutdownTimeoutMs`), its `onStop` runs, and the promise resolves.
   * State that the old application kept for itself is not carried over.
   * Reloads asked for at once run one after another.
   *
   * Rejects with a `GatewayError`: `invalid_argument` when `app` is not an
   * Application (an object whose hooks are functions) or is the one
   * running, `closed` once the service closes; with the error of
   * `app.onStart` when that fails, and then the old application stays.
   *
   * @example New code for a client that stays connected
   * ```ts
   * import assert from "node:assert/strict";
   * import { type Application, startRegister, startService } from "@wsgate/gateway";
   *
   * const handled: string[] = [];
   * function version(name: string): Application {
   *   return {
   *     onMessage(_clientId, message) {
   *       handled.push(`${name} ${message}`);
   *     },
   *   };
   * }
   * await using register = await startRegister({ hostname: "127.0.0.1", port: 0 });
   * await using service = await startService(version("v1"), {
   *   register: `127.0.0.1:${register.port}`,
   *   hostname: "127.0.0.1",
   *   port: 0,
   *   rpcPort: 0,
   * });
   * const socket = new WebSocket(`ws://127.0.0.1:${service.port}/`);
   * await new Promise((resolve) => socket.onopen = resolve);
   * socket.send("a");
   * while (handled.length < 1) await new Promise((resolve) => setTimeout(resolve, 10));
   * await service.reload(version("v2"));
   * socket.send("b");
   * while (handled.length < 2) await new Promise((resolve) => setTimeout(resolve, 10));
   * assert.deepEqual(handled, ["v1 a", "v2 b"]);
   * assert.equal(socket.readyState, WebSocket.OPEN);
   * const closed = new Promise((resolve) => socket.onclose = resolve);
   * await service.close();
   * await closed;
   * ```
   *
   * @param app The new hooks.
   * @returns Resolves when `app` runs every new hook call and the old
   *   application has stopped.
   */
  reload(app: Application): Promise<void>;
}

/**
 * Starts a service of `app`: a WebSocket server (none with `port: false`:
 * see {@linkcode Service.handler}), an RPC server, and the membership in
 * the cluster. Resolves when the servers listen, the service has joined
 * (a register sent it the member list) and `app.onStart` finished; clients
 * are accepted from then on. When no register answers within
 * `joinTimeoutMs`, it stops what it started and rejects with a
 * `GatewayError` (`unavailable`) that names the registers it tried.
 *
 * @example A service whose hooks see each client come and go
 * ```ts
 * import assert from "node:assert/strict";
 * import { startRegister, startService } from "@wsgate/gateway";
 *
 * const events: string[] = [];
 * await using register = await startRegister({ hostname: "127.0.0.1", port: 0 });
 * await using service = await startService({
 *   onConnect(clientId) {
 *     events.push(`connect ${clientId}`);
 *   },
 *   onClose(clientId) {
 *     events.push(`close ${clientId}`);
 *   },
 * }, {
 *   register: `127.0.0.1:${register.port}`,
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   rpcPort: 0,
 *   name: "A",
 * });
 * assert.equal(service.name, "A");
 * const socket = new WebSocket(`ws://127.0.0.1:${service.port}/`);
 * await new Promise((resolve) => socket.onopen = resolve);
 * socket.close();
 * await new Promise((resolve) => socket.onclose = resolve);
 * while (events.length < 2) await new Promise((resolve) => setTimeout(resolve, 10));
 * assert.match(events[0]!, new RegExp(`^connect ${service.nodeId}\\.`));
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
  const config = resolveServiceOptions(options);
  const nodeId = createNodeId();
  const name = config.name ?? nodeId;
  const logger = createLogger(`service ${name}`, config.logLevel);
  config.signal?.throwIfAborted();
  if (
    config.secret === undefined && !config.tls?.mutual &&
    !isLoopback(config.rpcHostname)
  ) {
    logger.warn(
      "RPC port listens beyond loopback without a secret: any host that reaches it (or the delivery port beside it) can push to every client; set a secret",
      { rpcHostname: config.rpcHostname },
    );
  }

  const metrics = new ServiceMetrics();
  const infoBounds = {
    maxInfoKeys: config.maxInfoKeys,
    maxInfoBytes: config.maxInfoBytes,
  };
  // Holder routing (docs/holder_routing.md): the hub tells the announcer
  // of its first and last members of each uid and group, the links carry
  // the announcements, and the index of what peers hold routes calls.
  const announcer = config.holderRouting
    ? new HolderAnnouncer({ nodeId, deadlineMs: config.deadlineMs })
    : undefined;
  const holderIndex = config.holderRouting
    ? new HolderIndex(nodeId)
    : undefined;
  const receiving: ReceiverOptions = {
    holdings: holderIndex && (() => holderIndex.openStream()),
    counts: metrics.peerReceived,
    // One sender's batches are applied from its newest connection only.
    connections: new NewestConnections(),
  };
  const hub = new LocalHub({ infoBounds, holdings: announcer });
  const members = new MemberTable(nodeId, {
    settleMs: 2 * REGISTER_BACKOFF.maxMs,
  });
  const readMaxBytes = 4 *
    Math.max(config.maxPeerQueueBytes, config.maxSendBytes);
  const peers = new PeerPool({
    secret: config.secret,
    tls: config.tls,
    // Peers' answers grow with their clients, not with what a request may
    // carry: internal/api/answer_size.ts says why and how large.
    readMaxBytes: maxPeerAnswerBytes(infoBounds, readMaxBytes),
    pingIntervalMs: config.pingIntervalMs,
    pingTimeoutMs: 2 * config.pingIntervalMs,
    maxQueuedBytes: config.maxPeerQueueBytes,
    deadlineMs: config.deadlineMs,
    interceptors: [timeUnaryCalls(metrics.peerUnary)],
    deliveryLatency: metrics.peerDelivery,
    logger,
    counts: metrics.peerTraffic,
    holdings: announcer,
  });
  announcer?.attach({ holdings: hub, members, peers });
  members.onChange(() => {
    peers.retain(members.peerAddresses());
    holderIndex?.retain(members.members());
    announcer?.connectAll();
    logger.debug("member list changed", { members: members.size });
  });
  const limits = { maxSendBytes: config.maxSendBytes, ...infoBounds };
  const guard = new RejectionGuard(logger);
  // Sessions that moved to another service, and this service's fences
  // (docs/recovery.md).
  const moves = new ClientMoves({
    nodeId,
    members,
    peers,
    forwardMs: config.recovery?.windowMs ?? DEFAULT_FORWARD_MS,
  });
  const cluster = createClusterApi({
    nodeId,
    hub,
    members,
    peers,
    limits,
    moves,
    holders: holderIndex && announcer && {
      peersFor: (kind, names) => holderIndex.peersFor(kind, names),
      settled: () => announcer.settled(),
    },
  });
  const api = createMeteredApi(cluster, metrics.api, guard.track);
  const ctx: Context = { api, service: { nodeId, name } };
  const slot = new ApplicationSlot(app, {
    ctx,
    logger,
    drainTimeoutMs: config.shutdownTimeoutMs,
  });
  // The sessions of wsgate.v1 clients (internal/session/).
  const sessions = new SessionStore({
    hub,
    nodeId,
    recovery: config.recovery,
    logger,
  });
  // Takes sessions over from other services, and hands them over.
  const takeovers = new Takeovers({
    nodeId,
    hub,
    store: sessions,
    members,
    peers,
    moves,
    logger,
    graceMs: config.deadlineMs,
    holdersSettled: () => announcer?.settled(),
  });
  sessions.setTakeover(takeovers.take);
  // Where peers' deliveries (and their fences) are applied.
  const target = takeovers.deliveryTarget(hub);
  const endpoint = new WebSocketEndpoint({
    app: slot,
    ctx,
    hub,
    ids: new ClientIdAllocator(nodeId),
    logger,
    metrics,
    idleTimeoutMs: config.idleTimeoutMs,
    maxBufferedBytes: config.maxBufferedBytes,
    maxMessageBytes: config.maxMessageBytes,
    rateLimit: config.rateLimit,
    maxQueuedMessages: config.maxQueuedMessages,
    allowedOrigins: config.allowedOrigins,
    infoBounds,
    sessions,
    helloTimeoutMs: config.helloTimeoutMs,
  });

  // Callers of the RPC and delivery ports prove the secret (nodes), or
  // send it (backends, with cluster scope).
  const nodeAuth = config.secret === undefined
    ? undefined
    : createRpcAuth(config.secret, { backendPaths: BACKEND_PATHS });
  // Deno's TLS listener cannot require client certificates: with mutual
  // TLS, deliveries stay on the gRPC stream, which requires them.
  let deliveryPort: DeliveryPort | undefined;
  try {
    deliveryPort =
      config.deliveryPort === undefined || config.tls?.mutual === true
        ? undefined
        : listenDeliveryPort({
          hostname: config.rpcHostname,
          port: config.deliveryPort,
          target,
          receiving,
          verifier: nodeAuth?.verifier,
          tls: config.tls,
          readMaxBytes,
          helloTimeoutMs: 2 * config.pingIntervalMs,
          logger,
        });
  } catch (error) {
    endpoint[Symbol.dispose]();
    guard[Symbol.dispose]();
    throw error;
  }
  let rpc: RpcServer;
  try {
    rpc = await listenRpc({
      hostname: config.rpcHostname,
      port: config.rpcPort,
      optionNames: { port: "rpcPort", hostname: "rpcHostname" },
      auth: nodeAuth,
      tls: config.tls,
      readMaxBytes: maxRequestBytes(limits),
      streamReadMaxBytes: readMaxBytes,
      pingIntervalMs: config.pingIntervalMs,
      pingTimeoutMs: 2 * config.pingIntervalMs,
      logger,
      routes: (router) =>
        router.service(
          GatewayService,
          createGatewayService({
            peers: createPeerHandlers(hub, nodeId, limits, {
              settled: announcer && (() => announcer.settled()),
              calls: metrics.peerCalls,
            }),
            backends: createBackendHandlers(api),
            target,
            sessions: takeovers,
            receiving,
          }),
        ),
      rawMethods: [
        deliverEndpoint(target, () => deliveryPort?.port, receiving),
      ],
    });
  } catch (error) {
    await deliveryPort?.close();
    endpoint[Symbol.dispose]();
    guard[Symbol.dispose]();
    throw error;
  }
  const rpcAddress = formatHostPort(config.lanIp, rpc.port);
  // Peers bind their proofs to the address this service announces.
  nodeAuth?.verifier.bindTo(rpcAddress);

  let closing: Promise<void> | undefined;
  /** Whether onStart finished: clients are accepted from then on. */
  let started = false;
  /** Where the service is in its life, as /healthz and /metrics tell. */
  const phase = () =>
    closing !== undefined
      ? "closing" as const
      : members.joined && started
      ? "ready" as const
      : "starting" as const;
  const ops = {
    health: () => ({
      status: phase(),
      nodeId,
      name,
      members: members.size,
      clients: hub.size,
    }),
    metrics: () =>
      formatServiceMetrics(metrics, {
        ready: phase() === "ready",
        connections: endpoint.size,
        uids: hub.uidCount,
        groups: hub.groupCount,
        members: members.size,
        detachedSessions: sessions.held,
        peerQueuedBytes: peers.queuedBytes,
        holderFallbackPeers: holderIndex?.fallbackPeers,
        holderNames: holderIndex?.size,
      }),
  };
  const httpApi = config.httpApiSecret === undefined
    ? undefined
    : createHttpApi({ api, secret: config.httpApiSecret, metrics, logger });

  const handlerOptions = { ops, httpApi, fetch: config.fetch };
  // Without a port of its own (port: false), clients come through handler.
  const handler = createServiceHandler({
    ...handlerOptions,
    upgrade: (request, info: Pick<Deno.ServeHandlerInfo, "remoteAddr">) =>
      endpoint.upgradeStandard(request, info),
  });
  let server: HttpServer | undefined;
  try {
    server = config.port === undefined ? undefined : listenHttp({
      hostname: config.hostname,
      port: config.port,
      headerTimeoutMs: config.headerTimeoutMs,
      maxPendingConnections: config.maxPendingConnections,
      // The HTTP API's JSON carries at most a message of maxSendBytes, as
      // base64 when binary.
      maxBodyBytes: 2 * config.maxSendBytes + 64 * 1024,
      logger,
      counters: metrics.http,
      handler: createServiceHandler({
        ...handlerOptions,
        upgrade: (request, info) => endpoint.upgrade(request, info),
      }),
    });
  } catch (error) {
    await rpc.close();
    await deliveryPort?.close();
    endpoint[Symbol.dispose]();
    guard[Symbol.dispose]();
    throw error;
  }
  const websocketAddress = server === undefined
    ? ""
    : formatHostPort(config.hostname, server.port);

  const links = joinRegisters(config.registers, {
    member: { nodeId, rpcAddress },
    table: members,
    secret: config.secret,
    tls: config.tls,
    pingIntervalMs: config.pingIntervalMs,
    pingTimeoutMs: 2 * config.pingIntervalMs,
    backoff: REGISTER_BACKOFF,
    logger,
    stats: memberFigures({
      name,
      websocketAddress,
      metrics,
      connections: () => endpoint.size,
      hub,
      phase,
    }),
  });

  const close = () => {
    closing ??= (async () => {
      stopWatching();
      const reloads = slot.close();
      await shutDownService(
        {
          links,
          endpoint,
          hub,
          sessions,
          peers,
          members,
          server,
          rpc,
          deliveryPort,
          onStop: () =>
            started && slot.app.onStop !== undefined
              ? () => slot.app.onStop!(ctx)
              : undefined,
        },
        config.shutdownTimeoutMs,
        logger,
      );
      // A replaced application that is still being stopped.
      await reloads;
      guard[Symbol.dispose]();
      takeovers[Symbol.dispose]();
      moves[Symbol.dispose]();
      logger.info("service stopped");
    })();
    return closing;
  };
  const stopWatching = onAbort(config.signal, close);

  const joined = await waitForJoin(
    links.joined,
    config.joinTimeoutMs,
    config.signal,
  );
  if (config.signal?.aborted) {
    await close();
    throw config.signal.reason;
  }
  if (joined instanceof GatewayError) {
    logger.error("no register accepted this service; stopping", {
      error: joined.message,
    });
    await close();
    throw joined;
  }
  if (joined === false) {
    const error = noRegisterAnswered(config.registers, config.joinTimeoutMs);
    // The rejection is the report; the log line is for who reads only logs.
    logger.warn("no register answered; stopping", {
      registers: config.registers.join(","),
      waitedMs: config.joinTimeoutMs,
    });
    await close();
    throw error;
  }
  if (app.onStart !== undefined) {
    try {
      await app.onStart(ctx);
    } catch (error) {
      logger.error("onStart failed; closing", { error: errorText(error) });
      await close();
      throw error;
    }
  }
  started = true;
  if (closing === undefined) endpoint.open();
  logger.info("service started", {
    ...(name === nodeId ? {} : { nodeId }),
    websocket: websocketAddress || "none (service.handler)",
    rpc: rpcAddress,
  });
  return {
    api,
    nodeId,
    name,
    hostname: server === undefined ? "" : config.hostname,
    port: server?.port ?? 0,
    rpcAddress,
    deliveryPort: deliveryPort?.port,
    close,
    [Symbol.asyncDispose]: close,
    handler: async (request, info) => await handler(request, info),
    reload: (next) => slot.replace(next),
  };
}

/** Why a service that no register answered does not start. */
function noRegisterAnswered(
  registers: readonly string[],
  waitedMs: number,
): GatewayError {
  const tried = registers.join(", ");
  return new GatewayError(
    "unavailable",
    `Cannot join the cluster: no register answered within ${waitedMs} ms (tried ${tried}); check that a register runs at ${
      registers.length === 1 ? "that address" : "one of those addresses"
    } and that this host reaches it (hostname, port, firewall, TLS on both or neither), or raise joinTimeoutMs (--join-timeout-ms)`,
  );
}

/**
 * What `joined` settles with, or `false` when `ms` pass or `signal` aborts
 * first.
 */
async function waitForJoin(
  joined: Promise<GatewayError | undefined>,
  ms: number,
  signal: AbortSignal | undefined,
): Promise<GatewayError | undefined | false> {
  const stopWaiting = new AbortController();
  const result = await Promise.race([
    joined,
    sleep(
      ms,
      AbortSignal.any([
        stopWaiting.signal,
        ...(signal === undefined ? [] : [signal]),
      ]),
    ).then(() => false as const),
  ]);
  stopWaiting.abort();
  return result;
}
