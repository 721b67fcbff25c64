// The options of startService with their defaults applied, checked at once.

import type { TlsOptions } from "../../tls.ts";
import type { RateLimit } from "../../application.ts";
import { parseHostPort } from "../base/address.ts";
import type { LogLevel } from "../base/logger.ts";
import {
  type CheckedTls,
  checkLogLevel,
  checkNonEmpty,
  checkNonNegative,
  checkOrigins,
  checkPort,
  checkPositive,
  checkSecret,
  checkTls,
} from "../base/options.ts";

/**
 * Options of {@linkcode startService}.
 *
 * @example A service with a secret, a deadline and quiet logs
 * ```ts
 * import assert from "node:assert/strict";
 * import { type ServiceOptions, startRegister, startService } from "@wsgate/gateway";
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
   * What people call this service: it starts every log line of the service
   * (`service <name>: ...`), and `/healthz` and the hooks' context
   * ({@linkcode Context.service}) tell it.
   *
   * @default {the node id}
   */
  name?: string;
  /**
   * Address the WebSocket server listens on; unused with `port: false`.
   *
   * @default {"0.0.0.0"}
   */
  hostname?: string;
  /**
   * WebSocket port; 0 picks a free one ({@linkcode Service.port} tells).
   * `false` opens none: the service joins the cluster, and its clients
   * come through {@linkcode Service.handler} in the application's own
   * server (`Deno.serve`, Hono, ...); docs/mounting.md says which limits of
   * the own port then belong to that server. `hostname`, `headerTimeoutMs`
   * and `maxPendingConnections` are unused then.
   *
   * @default {9201}
   */
  port?: number | false;
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
   * Shared secret of the cluster. It never travels between nodes: each
   * register and peer call carries a proof of it instead (an HMAC over a
   * nonce of the callee's and the address dialed), and a peer must prove
   * it too before it is sent anything (see "Node authentication" in the
   * README). This service's RPC port refuses a caller without a valid
   * proof with gRPC `UNAUTHENTICATED` before reading its request; backends
   * may send `authorization: Bearer <secret>` instead, for calls with
   * cluster scope. When every register refuses this service, `startService`
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
   * How long `startService` waits to join the cluster, in milliseconds. A
   * service has joined once a register sent it the member list; until then
   * it accepts no client (upgrades get 503, `/healthz` says `starting`) and
   * `onStart` has not run. When no register answers in time (none runs
   * there, it is unreachable, or TLS differs), `startService` stops what it
   * started and rejects with a `GatewayError` whose code is `unavailable`
   * and whose message names the registers it tried; the command line exits
   * with 1 and that message. A register lost after joining is another
   * matter: the service keeps its last-known members and re-joins.
   *
   * @default {30000}
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
   * Holder routing: each service tells its peers which uids and groups it
   * holds members of, so that sends and queries about a uid or group reach
   * only the services that hold it (none when nobody does), and a call
   * that binds a uid or joins a group resolves once every reachable peer
   * knows (docs/holder_routing.md). `false` asks every peer, as before; peers
   * that do not announce (older versions, or `false`) are always asked.
   *
   * @default {true}
   */
  holderRouting?: boolean;
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
   * Bytes that may wait in one client's socket. A client with more than
   * this waiting once the event loop had a turn to write, and then less
   * waiting at each look every 10 ms until it is under the limit again (a
   * burst sent in one go is not held against a client that reads it),
   * reads slower than it is sent to: it is closed with 1008 (policy
   * violation), reason `"slow consumer: too much data waiting"`, what
   * waits for it is dropped, and it is cleaned up at once (its `onClose`
   * runs, it leaves its uid and groups). So it never slows down anyone
   * else, and holds at most this plus what is sent to it in one turn of
   * the event loop.
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
   * import { startRegister, startService } from "@wsgate/gateway";
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
   * @example The HTTP API refuses a request without the token
   * ```ts
   * import assert from "node:assert/strict";
   * import { startRegister, startService } from "@wsgate/gateway";
   *
   * await using register = await startRegister({ hostname: "127.0.0.1", port: 0 });
   * await using service = await startService({}, {
   *   register: `127.0.0.1:${register.port}`,
   *   hostname: "127.0.0.1",
   *   port: 0,
   *   rpcPort: 0,
   *   httpApiSecret: "backend-token",
   * });
   * // The README's HTTP API section lists the methods and their bodies.
   * const refused = await fetch(`http://127.0.0.1:${service.port}/api/anything`, {
   *   method: "POST",
   *   headers: { authorization: "Bearer wrong-token" },
   * });
   * assert.equal(refused.status, 401);
   * assert.equal((await refused.json()).error.code, "unauthenticated");
   * ```
   *
   * @default {undefined}
   */
  httpApiSecret?: string;
  /**
   * How many messages a second one client may send, as a token bucket:
   * `burst` messages at once, refilled at `messagesPerSecond`. A client that
   * sends faster is closed with 1008 (policy violation), reason
   * `"rate limit"`, and counted in `wsgate_rate_limit_closes_total`; no
   * other client notices. {@linkcode Application.onHandshake} can give one
   * client other limits (`rateLimit` of its answer). `false` turns it off.
   *
   * @default {{ messagesPerSecond: 100, burst: 200 }}
   */
  rateLimit?: RateLimit | false;
  /**
   * Messages of one client that may wait for its `onMessage` (the hook runs
   * for one message at a time). While this many wait, the service stops
   * reading that client's socket (TCP pushes back on the client) until the
   * hook caught up; what still waits when the client is closed is dropped.
   *
   * @default {64}
   */
  maxQueuedMessages?: number;
  /**
   * How long a connection on the WebSocket port may take to send its
   * request headers (and a request body, if any), in milliseconds, from
   * when it is accepted or when its previous request was answered. A
   * connection still without a full request by then is closed. It also
   * closes idle keep-alive connections.
   *
   * @default {10000}
   */
  headerTimeoutMs?: number;
  /**
   * Connections on the WebSocket port that have not finished their request
   * (still sending headers, or idle between requests). With more, the one
   * that has waited longest is closed to make room, so a flood of slow
   * connections cannot hold the port or the process's file descriptors.
   *
   * @default {1024}
   */
  maxPendingConnections?: number;
  /**
   * Keys the info map of one client may have (see {@linkcode Api}); a call
   * that sets or updates it that would go past it is refused
   * with a `GatewayError` whose code is `invalid_argument`, and the map is
   * left as it was.
   *
   * @default {64}
   */
  maxInfoKeys?: number;
  /**
   * Bytes the info map of one client may take, as UTF-8 of its keys and
   * values; a call that would go past it is refused with `invalid_argument`.
   * It bounds what one client adds to the answer of a query for the infos
   * of all clients.
   *
   * @default {16384}
   */
  maxInfoBytes?: number;
  /**
   * Sessions of the clients that speak the `wsgate.v1` subprotocol
   * (docs/protocol.md; `client.ts` does). When such a client's connection
   * ends without its own close (code 1000): the network failed, the
   * heartbeat gave up, or the service closed (1012), its session is kept
   * for `windowMs`: its uid, groups and info stay, and what is sent to its
   * clientId, uid or groups (and to all) is kept for it, up to `maxBytes`
   * (bytes of binary, UTF-16 units of text, plus 8 a message); past
   * that, or once the window passes, the session is released (uid, groups
   * and info with it) and cannot recover. Meanwhile the client counts as
   * offline: the online checks, the counts and the lists of the
   * {@linkcode Api} leave it out. When the client comes back in time with its token, it
   * gets the same clientId back (another service takes the session over
   * and gives it a new one), then every frame it missed, then live ones;
   * `onConnect` runs with `ctx.resumed`. So a service holds up to
   * `maxBytes` for each detached session. `false` keeps no sessions:
   * `wsgate.v1` clients still get seqs, and always `recovered: false`.
   * Raw WebSocket clients are not affected.
   *
   * @default {{ windowMs: 120000, maxBytes: 1048576 }}
   */
  recovery?: { windowMs?: number; maxBytes?: number } | false;
  /**
   * How long a `wsgate.v1` client may take to send its hello after the
   * upgrade, in milliseconds; it is closed with 1002 if it does not. Its
   * `onConnect` runs once the hello came.
   *
   * @default {10000}
   */
  helloTimeoutMs?: number;
}

/**
 * The defaults of {@linkcode ServiceOptions}, in one place for the options
 * and the command line's help.
 */
export const SERVICE_DEFAULTS = {
  register: "127.0.0.1:8101",
  hostname: "0.0.0.0",
  port: 9201,
  rpcPort: 9101,
  deliveryPort: 0,
  lanIp: "127.0.0.1",
  deadlineMs: 2000,
  joinTimeoutMs: 30_000,
  pingIntervalMs: 1000,
  maxPeerQueueBytes: 16 * 1024 * 1024,
  idleTimeoutMs: 30_000,
  maxBufferedBytes: 1024 * 1024,
  maxMessageBytes: 1024 * 1024,
  maxSendBytes: 1024 * 1024,
  shutdownTimeoutMs: 5000,
  logLevel: "info",
  rateLimit: { messagesPerSecond: 100, burst: 200 },
  maxQueuedMessages: 64,
  headerTimeoutMs: 10_000,
  maxPendingConnections: 1024,
  maxInfoKeys: 64,
  maxInfoBytes: 16 * 1024,
  recovery: { windowMs: 120_000, maxBytes: 1024 * 1024 },
  helloTimeoutMs: 10_000,
} as const;

/** {@linkcode ServiceOptions} with every default applied, checked. */
export interface ResolvedServiceOptions {
  /** The registers to join: at least one, each `"host:port"`. */
  readonly registers: readonly string[];
  /** `name`, or undefined for the node id. */
  readonly name: string | undefined;
  readonly hostname: string;
  /** Undefined: no port of its own (`port: false`). */
  readonly port: number | undefined;
  readonly rpcPort: number;
  readonly lanIp: string;
  /** `rpcHostname`, or `lanIp` when it is unset. */
  readonly rpcHostname: string;
  /** Undefined: no delivery port. */
  readonly deliveryPort: number | undefined;
  readonly secret: string | undefined;
  readonly tls: CheckedTls | undefined;
  readonly signal: AbortSignal | undefined;
  readonly deadlineMs: number;
  readonly joinTimeoutMs: number;
  readonly pingIntervalMs: number;
  readonly maxPeerQueueBytes: number;
  readonly holderRouting: boolean;
  readonly idleTimeoutMs: number;
  readonly maxBufferedBytes: number;
  readonly maxMessageBytes: number;
  readonly maxSendBytes: number;
  readonly allowedOrigins: ReadonlySet<string> | undefined;
  readonly shutdownTimeoutMs: number;
  readonly logLevel: LogLevel;
  readonly fetch: ServiceOptions["fetch"];
  readonly httpApiSecret: string | undefined;
  /** Undefined: no rate limit. */
  readonly rateLimit: RateLimit | undefined;
  readonly maxQueuedMessages: number;
  readonly headerTimeoutMs: number;
  readonly maxPendingConnections: number;
  readonly maxInfoKeys: number;
  readonly maxInfoBytes: number;
  /** Undefined: recovery is off (`recovery: false`). */
  readonly recovery: { windowMs: number; maxBytes: number } | undefined;
  readonly helloTimeoutMs: number;
}

/**
 * Checks a {@linkcode RateLimit}; the error starts with
 * `Cannot ${action}`.
 */
export function checkRateLimit(action: string, limit: unknown): RateLimit {
  const l = limit as Partial<RateLimit> | null;
  if (
    typeof l !== "object" || l === null ||
    typeof l.messagesPerSecond !== "number" ||
    !(l.messagesPerSecond > 0) || !Number.isFinite(l.messagesPerSecond) ||
    typeof l.burst !== "number" || !(l.burst >= 1) || !Number.isFinite(l.burst)
  ) {
    throw new RangeError(
      `Cannot ${action}: 'rateLimit' must be { messagesPerSecond: number > 0, burst: number >= 1 } or false: current value is ${
        JSON.stringify(limit)
      }`,
    );
  }
  return { messagesPerSecond: l.messagesPerSecond, burst: l.burst };
}

/**
 * Applies the defaults of {@linkcode ServiceOptions} and checks every value:
 * the first bad one throws a TypeError or RangeError that names it and its
 * current value.
 */
export function resolveServiceOptions(
  options: ServiceOptions,
): ResolvedServiceOptions {
  const d = SERVICE_DEFAULTS;
  const {
    hostname = d.hostname,
    port = d.port,
    rpcPort = d.rpcPort,
    lanIp = d.lanIp,
    signal,
    deadlineMs = d.deadlineMs,
    joinTimeoutMs = d.joinTimeoutMs,
    pingIntervalMs = d.pingIntervalMs,
    maxPeerQueueBytes = d.maxPeerQueueBytes,
    idleTimeoutMs = d.idleTimeoutMs,
    maxBufferedBytes = d.maxBufferedBytes,
    maxMessageBytes = d.maxMessageBytes,
    maxSendBytes = d.maxSendBytes,
    shutdownTimeoutMs = d.shutdownTimeoutMs,
    logLevel = d.logLevel,
    fetch,
    maxQueuedMessages = d.maxQueuedMessages,
    headerTimeoutMs = d.headerTimeoutMs,
    maxPendingConnections = d.maxPendingConnections,
    maxInfoKeys = d.maxInfoKeys,
    maxInfoBytes = d.maxInfoBytes,
    helloTimeoutMs = d.helloTimeoutMs,
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
  if (
    port !== false &&
    !(Number.isInteger(port) && port >= 0 && port <= 65535)
  ) {
    throw new RangeError(
      `Cannot start: 'port' must be an integer from 0 to 65535, or false: current value is ${
        JSON.stringify(port)
      }`,
    );
  }
  checkPort("rpcPort", rpcPort);
  const deliveryPort = options.deliveryPort ?? d.deliveryPort;
  if (
    deliveryPort !== false &&
    !(Number.isInteger(deliveryPort) && deliveryPort >= 0 &&
      deliveryPort <= 65535)
  ) {
    throw new RangeError(
      `Cannot start: 'deliveryPort' must be an integer from 0 to 65535, or false: current value is ${
        JSON.stringify(deliveryPort)
      }`,
    );
  }
  checkNonEmpty("lanIp", lanIp);
  checkPositive("deadlineMs", deadlineMs);
  checkPositive("joinTimeoutMs", joinTimeoutMs);
  checkPositive("pingIntervalMs", pingIntervalMs);
  checkPositive("maxPeerQueueBytes", maxPeerQueueBytes);
  checkNonNegative("idleTimeoutMs", idleTimeoutMs);
  checkPositive("maxBufferedBytes", maxBufferedBytes);
  checkPositive("maxMessageBytes", maxMessageBytes);
  checkPositive("maxSendBytes", maxSendBytes);
  checkNonNegative("shutdownTimeoutMs", shutdownTimeoutMs);
  checkPositive("maxQueuedMessages", maxQueuedMessages);
  checkPositive("headerTimeoutMs", headerTimeoutMs);
  checkPositive("maxPendingConnections", maxPendingConnections);
  checkPositive("maxInfoKeys", maxInfoKeys);
  checkPositive("maxInfoBytes", maxInfoBytes);
  checkPositive("helloTimeoutMs", helloTimeoutMs);
  const recovery = checkRecovery(options.recovery);
  const holderRouting = options.holderRouting ?? true;
  if (typeof holderRouting !== "boolean") {
    throw new TypeError(
      `Cannot start: 'holderRouting' must be true or false: current value is ${
        JSON.stringify(holderRouting)
      }`,
    );
  }
  const rateLimit = options.rateLimit === false
    ? undefined
    : checkRateLimit("start", options.rateLimit ?? d.rateLimit);
  const allowedOrigins = checkOrigins(options.allowedOrigins);
  const secret = checkSecret(options.secret);
  const tls = checkTls(options.tls);
  const httpApiSecret = options.httpApiSecret === undefined
    ? undefined
    : checkNonEmpty("httpApiSecret", options.httpApiSecret);
  if (fetch !== undefined && typeof fetch !== "function") {
    throw new TypeError(
      `Cannot start: 'fetch' must be a function: current value is ${typeof fetch}`,
    );
  }
  const name = options.name === undefined
    ? undefined
    : checkNonEmpty("name", options.name);
  return {
    registers,
    name,
    hostname,
    port: port === false ? undefined : port,
    rpcPort,
    lanIp,
    rpcHostname: options.rpcHostname ?? lanIp,
    deliveryPort: deliveryPort === false ? undefined : deliveryPort,
    secret,
    tls,
    signal,
    deadlineMs,
    joinTimeoutMs,
    pingIntervalMs,
    maxPeerQueueBytes,
    holderRouting,
    idleTimeoutMs,
    maxBufferedBytes,
    maxMessageBytes,
    maxSendBytes,
    allowedOrigins,
    shutdownTimeoutMs,
    logLevel: checkLogLevel(logLevel),
    fetch,
    httpApiSecret,
    rateLimit,
    maxQueuedMessages,
    headerTimeoutMs,
    maxPendingConnections,
    maxInfoKeys,
    maxInfoBytes,
    recovery,
    helloTimeoutMs,
  };
}

/** Checks {@linkcode ServiceOptions.recovery}; undefined for `false`. */
function checkRecovery(
  value: ServiceOptions["recovery"],
): { windowMs: number; maxBytes: number } | undefined {
  if (value === false) return undefined;
  if (value !== undefined && (typeof value !== "object" || value === null)) {
    throw new TypeError(
      `Cannot start: 'recovery' must be { windowMs?, maxBytes? } or false: current value is ${
        JSON.stringify(value)
      }`,
    );
  }
  const {
    windowMs = SERVICE_DEFAULTS.recovery.windowMs,
    maxBytes = SERVICE_DEFAULTS.recovery.maxBytes,
  } = value ?? {};
  checkPositive("recovery.windowMs", windowMs);
  checkPositive("recovery.maxBytes", maxBytes);
  return { windowMs, maxBytes };
}
