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
import { ClientIdAllocator, createNodeId } from "./internal/hub/client_id.ts";
import { LocalHub } from "./internal/hub/local_hub.ts";
import { MemberTable } from "./internal/membership/member_table.ts";
import { PeerPool } from "./internal/rpc/peer_pool.ts";
import { ClusterApi } from "./internal/cluster/cluster_api.ts";
import { createGatewayHandler } from "./internal/rpc/gateway_handler.ts";
import { listenRpc, type RpcServer } from "./internal/grpc/rpc_server.ts";
import { deliverEndpoint } from "./internal/delivery/grpc_endpoint.ts";
import { listenDeliveryPort } from "./internal/delivery/port_listener.ts";
import { joinRegisters } from "./internal/membership/register_link.ts";
import { WebSocketEndpoint } from "./internal/service/websocket_endpoint.ts";
import { formatHostPort, isLoopback } from "./internal/base/address.ts";
import {
  createLogger,
  errorText,
  type LogLevel,
} from "./internal/base/logger.ts";
import { onAbort } from "./internal/base/options.ts";
import { resolveServiceOptions } from "./internal/service/service_options.ts";
import { guardUnhandledRejections } from "./internal/service/rejection_guard.ts";
import { shutDownService } from "./internal/service/shutdown.ts";
import { sleep } from "./internal/base/backoff.ts";
import {
  formatServiceMetrics,
  ServiceMetrics,
} from "./internal/ops/metrics.ts";
import { MeteredApi } from "./internal/api/metered_api.ts";
import { timeUnaryCalls } from "./internal/grpc/rpc_timing.ts";
import { createHttpApi } from "./internal/ops/http_api.ts";
import { createServiceHandler } from "./internal/service/service_handler.ts";
import type { BackoffOptions } from "./internal/base/backoff.ts";
import type { TlsOptions } from "./tls.ts";

/** How a service retries a register: capped, jittered, exponential. */
const REGISTER_BACKOFF: BackoffOptions = { minMs: 100, maxMs: 3000 };

/**
 * Options of {@linkcode startService}.
 *
 * @example A service with a secret, a deadline and quiet logs
 * ```ts
 * import assert from "node:assert/strict";
 * import { type ServiceOptions, startRegister, startService } from "./mod.ts";
 *
 * await using register = await startRegister({ hostname: "127.0.0.1", port: 0, secret: "s3cret" });
 * const options: ServiceOptions = {
 *   register: `127.0.0.1:${register.port}`,
 *   secret: "s3cret",
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   rpcPort: 0,
 *   lanIp: "127.0.0.1",
 *   deadlineMs: 1000,
 *   logLevel: "warn",
 * };
 * await using service = await startService({}, options);
 * assert.ok(service.rpcAddress.startsWith("127.0.0.1:"));
 * ```
 */
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
   * TCP port for deliveries from peers, on `rpcHostname`: `sendTo*` calls
   * that reach clients of other services travel there in batches, with
   * less overhead than on the gRPC Deliver stream. Peers learn the port
   * over gRPC and fall back to the gRPC stream when they cannot reach it,
   * so in a container or behind a firewall set a fixed port and open it
   * beside `rpcPort`. The secret and TLS apply to it as to the RPC port.
   * `false` turns it off; with `tls.mutual` there is none either (Deno's
   * TLS listener cannot require client certificates), and deliveries use
   * the gRPC stream.
   *
   * @default {0 (any free port)}
   */
  deliveryPort?: number | false;
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
   * peer fail at once with `unavailable` until it catches up. The RPC port
   * refuses requests of more than four times this (or `maxSendBytes`, if
   * larger) with `RESOURCE_EXHAUSTED`, before reading them.
   *
   * @default {16777216}
   */
  maxPeerQueueBytes?: number;
  /**
   * Client heartbeat, in milliseconds. A client that sends nothing for half
   * of this is pinged (browsers answer pings by themselves); one from which
   * nothing, not even the pong, arrives for this long is closed with 1001
   * and cleaned up like any other (its `onClose` runs, it leaves its uid and
   * groups). 0 turns the heartbeat off.
   *
   * @default {30000}
   */
  idleTimeoutMs?: number;
  /**
   * Bytes that may wait in one client's socket (its `bufferedAmount`). A
   * client with more than this still waiting once the event loop had a turn
   * to write (a burst sent in one go is not held against it) reads slower
   * than it is sent to: it is closed with 1008 (policy violation), reason
   * `"slow consumer: too much data waiting"`, and cleaned up at once (its
   * `onClose` runs, it leaves its uid and groups). So it never slows down
   * anyone else, and holds at most this plus what is sent to it in one turn
   * of the event loop.
   *
   * @default {1048576}
   */
  maxBufferedBytes?: number;
  /**
   * The largest message a client may send, in bytes (UTF-8 for text). A
   * client that sends a larger one is closed with 1009 (message too big),
   * and the message is not delivered.
   *
   * @default {1048576}
   */
  maxMessageBytes?: number;
  /**
   * The largest message the Api sends, in bytes (UTF-8 for text). Larger
   * ones are refused with a `GatewayError` whose code is
   * `invalid_argument`, and nothing is sent.
   *
   * @default {1048576}
   */
  maxSendBytes?: number;
  /**
   * Browser origins that may connect, as browsers send them in the `Origin`
   * header (`"https://example.com"`). An upgrade request from any other
   * origin is refused with 403 before the handshake hook runs. Requests
   * without an `Origin` header (clients that are not browsers) are not
   * affected; refuse them in {@linkcode Application.onHandshake} if needed.
   * Unset, any origin may connect.
   */
  allowedOrigins?: readonly string[];
  /**
   * The longest {@linkcode Service.close} waits for clients to finish their
   * close handshake, for their `onClose` and the application's `onStop` to
   * settle, and for deliveries to peers to be acknowledged, in milliseconds.
   * Past it, what is left is cut off; stopping the servers then takes at
   * most about a second more.
   *
   * @default {5000}
   */
  shutdownTimeoutMs?: number;
  /**
   * How much to log on stderr.
   *
   * @default {"info"}
   */
  logLevel?: LogLevel;
  /**
   * Answers the plain HTTP requests of the WebSocket port (any request
   * that is not a WebSocket upgrade), for example to serve the web page
   * of a chat. It runs after the built-in routes: `GET /healthz`,
   * `GET /metrics` and, when {@linkcode ServiceOptions.httpApiSecret} is
   * set, `POST /api/<method>`. Unset, such requests get
   * `426 Upgrade Required`.
   *
   * @example Serving a page next to the WebSockets
   * ```ts
   * import assert from "node:assert/strict";
   * import { startRegister, startService } from "./mod.ts";
   *
   * await using register = await startRegister({ hostname: "127.0.0.1", port: 0 });
   * await using service = await startService({}, {
   *   register: `127.0.0.1:${register.port}`,
   *   hostname: "127.0.0.1",
   *   port: 0,
   *   rpcPort: 0,
   *   fetch: () => new Response("<h1>hello</h1>", { headers: { "content-type": "text/html" } }),
   * });
   * const page = await fetch(`http://127.0.0.1:${service.port}/`);
   * assert.equal(await page.text(), "<h1>hello</h1>");
   * ```
   *
   * @default {undefined}
   */
  fetch?: (request: Request) => Response | Promise<Response>;
  /**
   * Turns on the HTTP API on the WebSocket port: `POST /api/<method>` with
   * a JSON body and `Authorization: Bearer <httpApiSecret>` calls the
   * {@linkcode Api} method of that name, for backends that do not speak
   * gRPC. Unset, the API is off and `/api/` paths go to `fetch`. It is a
   * separate secret from `secret` because the WebSocket port usually faces
   * the internet while the cluster secret never leaves the servers.
   *
   * @example Pushing to a uid with an HTTP request
   * ```ts
   * import assert from "node:assert/strict";
   * import { startRegister, startService } from "./mod.ts";
   *
   * await using register = await startRegister({ hostname: "127.0.0.1", port: 0 });
   * await using service = await startService({}, {
   *   register: `127.0.0.1:${register.port}`,
   *   hostname: "127.0.0.1",
   *   port: 0,
   *   rpcPort: 0,
   *   httpApiSecret: "backend-token",
   * });
   * const response = await fetch(`http://127.0.0.1:${service.port}/api/sendToUid`, {
   *   method: "POST",
   *   headers: { authorization: "Bearer backend-token" },
   *   body: JSON.stringify({ uid: "alice", message: "you have mail" }),
   * });
   * assert.equal(response.status, 200);
   * assert.deepEqual(await response.json(), { result: null });
   * ```
   *
   * @default {undefined}
   */
  httpApiSecret?: string;
}

/**
 * A running service, from {@linkcode startService}.
 *
 * @example Using the Api outside any hook
 * ```ts
 * import assert from "node:assert/strict";
 * import { startRegister, startService } from "./mod.ts";
 *
 * await using register = await startRegister({ hostname: "127.0.0.1", port: 0 });
 * await using service = await startService({}, {
 *   register: `127.0.0.1:${register.port}`,
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   rpcPort: 0,
 * });
 * const socket = new WebSocket(`ws://127.0.0.1:${service.port}/`);
 * await new Promise((resolve) => socket.onopen = resolve);
 * const [clientId] = await service.api.getAllClientIds();
 * assert.ok(clientId?.startsWith(`${service.nodeId}.`));
 * socket.close();
 * await new Promise((resolve) => socket.onclose = resolve);
 * ```
 */
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
}

/**
 * Starts a service of `app`: a WebSocket server, an RPC server, and the
 * membership in the cluster. Resolves when both servers listen, the first
 * member list arrived (or `joinTimeoutMs` passed) and `app.onStart`
 * finished; clients are accepted from then on.
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
  const config = resolveServiceOptions(options);
  const nodeId = createNodeId();
  const logger = createLogger(`service ${nodeId}`, config.logLevel);
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
  const hub = new LocalHub();
  const members = new MemberTable(nodeId, {
    settleMs: 2 * REGISTER_BACKOFF.maxMs,
  });
  const readMaxBytes = 4 *
    Math.max(config.maxPeerQueueBytes, config.maxSendBytes);
  const peers = new PeerPool({
    secret: config.secret,
    tls: config.tls,
    readMaxBytes,
    pingIntervalMs: config.pingIntervalMs,
    pingTimeoutMs: 2 * config.pingIntervalMs,
    maxQueuedBytes: config.maxPeerQueueBytes,
    deadlineMs: config.deadlineMs,
    interceptors: [timeUnaryCalls(metrics.peerUnary)],
    deliveryLatency: metrics.peerDelivery,
    logger,
    batchCounts: metrics.peerBatches,
  });
  members.onChange(() => {
    peers.retain(members.peerAddresses());
    logger.debug("member list changed", { members: members.size });
  });
  const api = new MeteredApi(
    new ClusterApi({
      nodeId,
      hub,
      members,
      peers,
      deadlineMs: config.deadlineMs,
      maxSendBytes: config.maxSendBytes,
    }),
    metrics,
  );
  const endpoint = new WebSocketEndpoint({
    app,
    api,
    hub,
    ids: new ClientIdAllocator(nodeId),
    logger,
    metrics,
    idleTimeoutMs: config.idleTimeoutMs,
    maxBufferedBytes: config.maxBufferedBytes,
    maxMessageBytes: config.maxMessageBytes,
    allowedOrigins: config.allowedOrigins,
  });

  // Deno's TLS listener cannot require client certificates: with mutual
  // TLS, deliveries stay on the gRPC stream, which requires them.
  const deliveryPort =
    config.deliveryPort === undefined || config.tls?.mutual === true
      ? undefined
      : listenDeliveryPort({
        hostname: config.rpcHostname,
        port: config.deliveryPort,
        hub,
        secret: config.secret,
        tls: config.tls,
        readMaxBytes,
        helloTimeoutMs: 2 * config.pingIntervalMs,
        logger,
      });
  let rpc: RpcServer;
  try {
    rpc = await listenRpc({
      hostname: config.rpcHostname,
      port: config.rpcPort,
      secret: config.secret,
      tls: config.tls,
      readMaxBytes,
      pingIntervalMs: config.pingIntervalMs,
      pingTimeoutMs: 2 * config.pingIntervalMs,
      logger,
      routes: (router) =>
        router.service(GatewayService, createGatewayHandler(nodeId, hub, api)),
      rawMethods: [deliverEndpoint(hub, () => deliveryPort?.port)],
    });
  } catch (error) {
    await deliveryPort?.close();
    throw error;
  }
  const rpcAddress = formatHostPort(config.lanIp, rpc.port);

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
      }),
  };
  const httpApi = config.httpApiSecret === undefined
    ? undefined
    : createHttpApi({ api, secret: config.httpApiSecret, metrics, logger });

  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve(
      {
        hostname: config.hostname,
        port: config.port,
        onListen: () => {},
        onError: (error) => {
          logger.error("request failed", { error: String(error) });
          return new Response("internal error\n", { status: 500 });
        },
      },
      createServiceHandler({ endpoint, ops, httpApi, fetch: config.fetch }),
    );
  } catch (error) {
    await rpc.close();
    await deliveryPort?.close();
    throw error;
  }

  const links = joinRegisters(config.registers, {
    member: { nodeId, rpcAddress },
    table: members,
    secret: config.secret,
    tls: config.tls,
    pingIntervalMs: config.pingIntervalMs,
    pingTimeoutMs: 2 * config.pingIntervalMs,
    backoff: REGISTER_BACKOFF,
    logger,
  });
  const stopGuard = guardUnhandledRejections(logger);

  const ctx = { api };
  const close = () => {
    closing ??= (async () => {
      stopWatching();
      await shutDownService(
        {
          links,
          endpoint,
          hub,
          peers,
          members,
          server,
          rpc,
          deliveryPort,
          onStop: () =>
            started && app.onStop !== undefined
              ? () => app.onStop!(ctx)
              : undefined,
        },
        config.shutdownTimeoutMs,
        logger,
      );
      stopGuard();
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
    logger.warn("no register answered yet; still trying in the background", {
      registers: config.registers.join(","),
      waitedMs: config.joinTimeoutMs,
    });
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
    websocket: formatHostPort(config.hostname, server.addr.port),
    rpc: rpcAddress,
  });
  return {
    api,
    nodeId,
    hostname: config.hostname,
    port: server.addr.port,
    rpcAddress,
    deliveryPort: deliveryPort?.port,
    close,
    [Symbol.asyncDispose]: close,
  };
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
