// Starting a register: its gRPC server with the member registry, and the
// operator HTTP server beside it, with the dashboard.

import { createRegisterHandler } from "./register_handler.ts";
import { RegisterService } from "../../proto/gen/websocket/v1/register_pb.ts";
import { formatHostPort, isLoopback } from "../base/address.ts";
import { MemberRegistry } from "./member_registry.ts";
import { listenRpc } from "../grpc/rpc_server.ts";
import { createRpcAuth } from "../grpc/rpc_auth.ts";
import { REGISTER_BINDING } from "../base/node_proof.ts";
import { type HttpServer, listenHttp } from "../http/http_server.ts";
import { createLogger, type LogLevel } from "../base/logger.ts";
import {
  checkLogLevel,
  checkNonEmpty,
  checkPort,
  checkPositive,
  checkSecret,
  checkTls,
  onAbort,
} from "../base/options.ts";
import { formatRegisterMetrics, RegisterMetrics } from "../ops/metrics.ts";
import { opsResponse } from "../ops/ops_http.ts";
import type { TlsOptions } from "../../tls.ts";
import { DashboardStats } from "../dashboard/dashboard_stats.ts";
import { createDashboard } from "../dashboard/dashboard_http.ts";

/** The most bytes one request to the register may have: they are tiny. */
const REGISTER_READ_MAX_BYTES = 64 * 1024;

/**
 * Options of {@linkcode startRegister}.
 *
 * @example A register that requires a secret and serves /healthz
 * ```ts
 * import assert from "node:assert/strict";
 * import { type RegisterOptions, startRegister } from "@wsgate/gateway";
 *
 * const options: RegisterOptions = {
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   httpPort: 0,
 *   secret: "cluster-secret",
 *   logLevel: "warn",
 * };
 * await using register = await startRegister(options);
 * assert.ok(register.httpPort !== undefined);
 * ```
 */
export interface RegisterOptions {
  /**
   * Address to listen on. Use `"0.0.0.0"` when services on other hosts join.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * Port to listen on; 0 picks a free one ({@linkcode Register.port} tells).
   *
   * @default {8101}
   */
  port?: number;
  /**
   * Shared secret: services must prove that they know it to join (an HMAC
   * over a nonce of the register's: the secret itself never travels, see
   * "Node authentication" in the README), backends may list the members
   * with `authorization: Bearer <secret>`; other calls are refused with
   * gRPC `UNAUTHENTICATED` before their body is read. Give the same secret
   * to every service.
   *
   * @default {undefined (no check)}
   */
  secret?: string;
  /**
   * Serve over TLS, or mutual TLS (see {@linkcode TlsOptions}). Services
   * must then dial it with TLS too.
   *
   * @default {undefined (plaintext HTTP/2)}
   */
  tls?: TlsOptions;
  /** Closes the register when aborted. */
  signal?: AbortSignal;
  /**
   * How often an idle Join stream carries a heartbeat, in milliseconds.
   *
   * @default {1000}
   */
  heartbeatMs?: number;
  /**
   * The register pings each service's connection this often, in
   * milliseconds, and drops a service that does not answer within
   * `2 × pingIntervalMs`. 0 turns pings off.
   *
   * @default {1000}
   */
  pingIntervalMs?: number;
  /**
   * How much to log on stderr.
   *
   * @default {"info"}
   */
  logLevel?: LogLevel;
  /**
   * Port of a small plain-HTTP server for operators, on `hostname`:
   * `GET /healthz` (200 with a JSON body while the register runs) and
   * `GET /metrics` (Prometheus text). The register's main port speaks
   * HTTP/2 gRPC only, so these get a port of their own; 0 picks a free one
   * ({@linkcode Register.httpPort} tells). Unset, there is no HTTP server.
   * `GET /` there is the dashboard (see
   * {@linkcode RegisterOptions.dashboardToken}).
   *
   * @example Checking a register's health
   * ```ts
   * import assert from "node:assert/strict";
   * import { startRegister } from "@wsgate/gateway";
   *
   * await using register = await startRegister({ hostname: "127.0.0.1", port: 0, httpPort: 0 });
   * const health = await fetch(`http://127.0.0.1:${register.httpPort}/healthz`);
   * assert.equal(health.status, 200);
   * assert.equal((await health.json()).status, "ready");
   * ```
   *
   * @default {undefined}
   */
  httpPort?: number;
  /**
   * How long a connection to `httpPort` may take to send its request, in
   * milliseconds (from its accept, or its previous answer); one without a
   * whole request by then is closed.
   *
   * @default {10000}
   */
  headerTimeoutMs?: number;
  /**
   * Connections to `httpPort` still sending their request, at most; past
   * it, the one that has waited longest is closed.
   *
   * @default {256}
   */
  maxPendingConnections?: number;
  /**
   * The token of the dashboard, the page at `GET /` on `httpPort` that
   * shows the registers and services, their clients and traffic, updating
   * itself: the page asks for it, and its state (`GET /dashboard/state`)
   * answers only requests with `authorization: Bearer <dashboardToken>`.
   * It must differ from `secret`, which the dashboard never takes.
   *
   * Unset, the dashboard is open when the register has no `secret` (a
   * cluster on loopback, say), and off when it has one: the state answers
   * 403 with a message that says how to set a token, and the page shows it.
   * The operator port is plain HTTP: beyond loopback, put it behind a TLS
   * proxy. Needs `httpPort`.
   *
   * @example A register whose dashboard asks for a token
   * ```ts
   * import assert from "node:assert/strict";
   * import { startRegister } from "@wsgate/gateway";
   *
   * await using register = await startRegister({
   *   hostname: "127.0.0.1",
   *   port: 0,
   *   httpPort: 0,
   *   secret: "cluster-secret",
   *   dashboardToken: "dashboard-token",
   * });
   * const url = `http://127.0.0.1:${register.httpPort}/dashboard/state`;
   * const refused = await fetch(url);
   * assert.equal(refused.status, 401);
   * await refused.body?.cancel();
   * const state = await fetch(url, { headers: { authorization: "Bearer dashboard-token" } });
   * assert.equal((await state.json()).totals.services, 0);
   * ```
   *
   * @default {undefined (none)}
   */
  dashboardToken?: string;
  /**
   * How often each service reports its figures to the dashboard, in
   * milliseconds (services joined to a register without `httpPort` report
   * nothing to it); the page polls as often.
   *
   * @default {2000}
   */
  statsIntervalMs?: number;
}

/**
 * A running register, from {@linkcode startRegister}.
 *
 * @example Stopping a register with a signal
 * ```ts
 * import assert from "node:assert/strict";
 * import { startRegister } from "@wsgate/gateway";
 *
 * const controller = new AbortController();
 * const register = await startRegister({ hostname: "127.0.0.1", port: 0, signal: controller.signal });
 * assert.ok(register.port > 0);
 * controller.abort();
 * await register.close(); // resolves once the abort-triggered close is done
 * ```
 */
export interface Register extends AsyncDisposable {
  /** The address it listens on. */
  readonly hostname: string;
  /** The port it listens on. */
  readonly port: number;
  /**
   * The port of the operator HTTP server (the dashboard at `/`,
   * `/healthz`, `/metrics`), or
   * `undefined` when {@linkcode RegisterOptions.httpPort} was not set.
   */
  readonly httpPort: number | undefined;
  /** Stops the register: ends every Join stream, then closes the port. */
  close(): Promise<void>;
}

/**
 * Starts a register.
 *
 * @example Starting a register on a free port
 * ```ts
 * import assert from "node:assert/strict";
 * import { startRegister } from "@wsgate/gateway/register";
 *
 * await using register = await startRegister({ hostname: "127.0.0.1", port: 0 });
 * assert.ok(register.port > 0);
 * ```
 *
 * @param options Where to listen, the secret, and a signal to stop it.
 * @returns The running register, once it listens.
 */
export async function startRegister(
  options: RegisterOptions = {},
): Promise<Register> {
  const {
    hostname = "127.0.0.1",
    port = 8101,
    signal,
    heartbeatMs = 1000,
    pingIntervalMs = 1000,
    logLevel = "info",
    httpPort,
    headerTimeoutMs = 10_000,
    maxPendingConnections = 256,
    statsIntervalMs = 2000,
  } = options;
  checkPort("port", port);
  if (httpPort !== undefined) checkPort("httpPort", httpPort);
  checkPositive("heartbeatMs", heartbeatMs);
  checkPositive("headerTimeoutMs", headerTimeoutMs);
  checkPositive("maxPendingConnections", maxPendingConnections);
  checkPositive("statsIntervalMs", statsIntervalMs);
  if (pingIntervalMs !== 0) checkPositive("pingIntervalMs", pingIntervalMs);
  const secret = checkSecret(options.secret);
  const dashboardToken = options.dashboardToken === undefined
    ? undefined
    : checkNonEmpty("dashboardToken", options.dashboardToken);
  if (dashboardToken !== undefined && dashboardToken === secret) {
    throw new TypeError(
      "Cannot start: 'dashboardToken' must differ from 'secret': the dashboard never takes the cluster secret; give it a token of its own",
    );
  }
  if (dashboardToken !== undefined && httpPort === undefined) {
    throw new TypeError(
      "Cannot start: 'dashboardToken' needs 'httpPort': the dashboard is served there",
    );
  }
  const tls = checkTls(options.tls);
  const logger = createLogger("register", checkLogLevel(logLevel));
  signal?.throwIfAborted();

  if (secret === undefined && !tls?.mutual && !isLoopback(hostname)) {
    logger.warn(
      "register listens beyond loopback without a secret: any host that reaches it can join the cluster; set a secret",
      { hostname },
    );
  }
  const startedAt = performance.now();
  const dashboard = httpPort === undefined
    ? undefined
    : new DashboardStats({ intervalMs: statsIntervalMs });
  const registry = new MemberRegistry({
    heartbeatMs,
    logger,
    onLeave: (member) => dashboard?.forget(member.nodeId),
  });
  const metrics = new RegisterMetrics();
  const server = await listenRpc({
    hostname,
    port,
    // Services prove the secret (Join); backends may list the members with
    // the bearer secret.
    auth: secret === undefined ? undefined : createRpcAuth(secret, {
      binding: REGISTER_BINDING,
      backendPaths: [
        `/${RegisterService.typeName}/${RegisterService.method.listMembers.name}`,
      ],
    }),
    tls,
    readMaxBytes: REGISTER_READ_MAX_BYTES,
    pingIntervalMs,
    pingTimeoutMs: 2 * pingIntervalMs,
    logger,
    routes: (router) =>
      router.service(
        RegisterService,
        createRegisterHandler(
          registry,
          metrics,
          dashboard && { stats: dashboard, intervalMs: statsIntervalMs },
        ),
      ),
  });
  let closing: Promise<void> | undefined;
  let http: HttpServer | undefined;
  let sampler: ReturnType<typeof setInterval> | undefined;
  if (dashboard !== undefined && httpPort !== undefined) {
    const ops = {
      health: () => {
        const list = registry.list();
        return {
          status: closing === undefined ? "ready" as const : "closing" as const,
          registerId: list.registerId,
          members: list.members.length,
          version: Number(list.version),
        };
      },
      metrics: () => {
        const list = registry.list();
        return formatRegisterMetrics(metrics, {
          members: list.members.length,
          version: list.version,
        });
      },
    };
    const address = formatHostPort(hostname, server.port);
    const dashboardResponse = createDashboard({
      clusterSecret: secret !== undefined,
      token: dashboardToken,
      state: () => {
        const list = registry.list();
        return dashboard.state({
          registerId: list.registerId,
          address,
          uptimeMs: performance.now() - startedAt,
          members: list.members,
          memberListVersion: Number(list.version),
        });
      },
    });
    try {
      http = listenHttp({
        hostname,
        port: httpPort,
        optionNames: { port: "httpPort", hostname: "hostname" },
        headerTimeoutMs,
        maxPendingConnections,
        maxBodyBytes: 0,
        logger,
        counters: metrics.http,
        handler: (request) =>
          dashboardResponse(request) ??
            opsResponse(request, ops) ??
            new Response(
              "Not found: try / (the dashboard), /healthz or /metrics\n",
              { status: 404 },
            ),
      });
      sampler = setInterval(() => dashboard.sample(), statsIntervalMs);
    } catch (error) {
      registry.close();
      await server.close();
      throw error;
    }
  }
  logger.debug("register listening", { hostname, port: server.port });

  const close = () => {
    closing ??= (async () => {
      stopWatching();
      clearInterval(sampler);
      registry.close();
      await server.close();
      await http?.close();
    })();
    return closing;
  };
  const stopWatching = onAbort(signal, close);
  return {
    hostname,
    port: server.port,
    httpPort: http?.port,
    close,
    [Symbol.asyncDispose]: close,
  };
}
