/**
 * The {@linkcode Application}: the business code's hooks, called by a
 * service for its own life and for each of its clients.
 *
 * @module
 */

import type { Api, ClientInfo, Message } from "./api.ts";

/**
 * What every hook gets besides the clientId.
 *
 * @example Passing the context on to the application's own code
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Application, Context } from "./mod.ts";
 *
 * const where = new Map<string, string>();
 * function remember(clientId: string, ctx: Context): void {
 *   where.set(clientId, ctx.service.name);
 * }
 * const app: Application = { onMessage: (clientId, _message, ctx) => remember(clientId, ctx) };
 * await app.onMessage!("k2j4m6p8r0t2.1", "hi", {
 *   api: {} as never,
 *   service: { nodeId: "k2j4m6p8r0t2", name: "A" },
 * });
 * assert.equal(where.get("k2j4m6p8r0t2.1"), "A");
 * ```
 */
export interface Context {
  /** The cluster-wide Api. */
  readonly api: Api;
  /** The service that runs the hook. */
  readonly service: ServiceIdentity;
}

/**
 * Which service runs a hook: its node id (the prefix of its clients' ids)
 * and the name people call it by.
 *
 * @example Telling users where they are connected
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ServiceIdentity } from "./mod.ts";
 *
 * function where(service: ServiceIdentity): string {
 *   return `connected to ${service.name}`;
 * }
 * assert.equal(where({ nodeId: "k2j4m6p8r0t2", name: "A" }), "connected to A");
 * ```
 */
export interface ServiceIdentity {
  /** The service's node id: the prefix of its clients' ids. */
  readonly nodeId: string;
  /** {@linkcode ServiceOptions.name}, or the node id when it is unset. */
  readonly name: string;
}

/**
 * What {@linkcode Application.onConnect} gets.
 *
 * @example Reading the upgrade request
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Application, ConnectContext } from "./mod.ts";
 *
 * const rooms = new Map<string, string | null>();
 * const app: Application = {
 *   onConnect(clientId: string, { request }: ConnectContext) {
 *     rooms.set(clientId, new URL(request.url).searchParams.get("room"));
 *   },
 * };
 * await app.onConnect!("k2j4m6p8r0t2.1", {
 *   api: {} as never,
 *   service: { nodeId: "k2j4m6p8r0t2", name: "A" },
 *   request: new Request("http://localhost/?room=lobby"),
 * });
 * assert.equal(rooms.get("k2j4m6p8r0t2.1"), "lobby");
 * ```
 */
export interface ConnectContext extends Context {
  /** The HTTP request that asked for the WebSocket upgrade. */
  readonly request: Request;
  /**
   * Set when a `wsgate.v1` client came back within the recovery window
   * and got its session back (`ServiceOptions.recovery`): its uid, groups
   * and info are as they were, and what it missed was delivered before
   * anything this hook sends. `previousClientId` is the clientId it had:
   * the same one on the same service; another service that took the
   * session over gives it a new clientId. Undefined for a new client.
   */
  readonly resumed?: { readonly previousClientId: string };
}

/**
 * What {@linkcode Application.onHandshake} gets besides the request.
 *
 * @example Refusing loopback-only tools from elsewhere
 * ```ts
 * import assert from "node:assert/strict";
 * import type { HandshakeContext, HandshakeResult } from "./mod.ts";
 *
 * function onHandshake(_request: Request, ctx: HandshakeContext): HandshakeResult {
 *   if (ctx.remoteAddr.hostname !== "127.0.0.1") {
 *     return new Response("forbidden\n", { status: 403 });
 *   }
 * }
 * const refused = onHandshake(new Request("http://localhost/"), {
 *   api: {} as never,
 *   service: { nodeId: "k2j4m6p8r0t2", name: "A" },
 *   remoteAddr: { hostname: "10.0.0.9", port: 50000 },
 * });
 * assert.equal((refused as Response).status, 403);
 * ```
 */
export interface HandshakeContext extends Context {
  /** The address of the peer that asks for the upgrade. */
  readonly remoteAddr: { readonly hostname: string; readonly port: number };
}

/**
 * How {@linkcode Application.onHandshake} accepts a client: with the info
 * map that the client starts with.
 *
 * @example Accepting with the user's name
 * ```ts
 * import assert from "node:assert/strict";
 * import type { HandshakeAccept } from "./mod.ts";
 *
 * const accept: HandshakeAccept = { info: { user: "alice" } };
 * assert.equal(accept.info?.user, "alice");
 * ```
 */
export interface HandshakeAccept {
  /**
   * The client's initial info map, which the {@linkcode Api} tells from
   * `onConnect` on.
   *
   * @default {{}}
   */
  readonly info?: ClientInfo;
  /**
   * This client's rate limit, in place of the service's
   * {@linkcode ServiceOptions.rateLimit}: for example more for a trusted
   * backend that connects as a client, or `false` for none.
   *
   * @default {the service's rateLimit}
   */
  readonly rateLimit?: RateLimit | false;
}

/**
 * A token bucket for the messages of one client: it holds `burst`
 * messages and refills at `messagesPerSecond`; a client that finds it
 * empty is closed with 1008, reason `"rate limit"`.
 *
 * @example Ten a second, twenty at once
 * ```ts
 * import assert from "node:assert/strict";
 * import type { RateLimit } from "./mod.ts";
 *
 * const limit: RateLimit = { messagesPerSecond: 10, burst: 20 };
 * assert.ok(limit.burst >= 1);
 * ```
 */
export interface RateLimit {
  /** Messages a second, refilled continuously; greater than 0. */
  readonly messagesPerSecond: number;
  /** Messages the bucket holds: a client may send this many at once; at least 1. */
  readonly burst: number;
}

/**
 * What {@linkcode Application.onHandshake} decides: a `Response` refuses
 * the upgrade and is sent as it is; anything else accepts it, with the
 * initial info of a {@linkcode HandshakeAccept}.
 *
 * @example Three decisions
 * ```ts
 * import assert from "node:assert/strict";
 * import type { HandshakeResult } from "./mod.ts";
 *
 * const results: HandshakeResult[] = [
 *   new Response("too many connections\n", { status: 429 }),
 *   { info: { plan: "free" } },
 *   undefined,
 * ];
 * assert.equal(results.filter((r) => r instanceof Response).length, 1);
 * ```
 */
export type HandshakeResult = Response | HandshakeAccept | void;

/**
 * Business code: optional hooks that a service calls.
 *
 * Per client, `onHandshake` decides on the upgrade request before any
 * WebSocket exists; then the hooks run one after another, never
 * overlapping: `onConnect` finishes (its promise settles) before the first
 * `onMessage`, each `onMessage` before the next, and `onClose` runs exactly
 * once, after the last `onMessage`; this holds across `service.reload`,
 * which makes the next hook of a client run on the new application. A hook
 * that throws or rejects is logged and affects nothing else (a failed
 * `onHandshake` refuses the client with 500).
 *
 * Per service, `onStart` runs once the service has joined the cluster and
 * before it accepts clients; `onStop` runs when it closes, after every
 * client was closed and its `onClose` finished, while the Api still reaches
 * the rest of the cluster.
 *
 * The {@linkcode Api} documents what the hooks can do with its `ctx.api`.
 *
 * @example Counting this service's clients
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Application } from "./mod.ts";
 *
 * let clients = 0;
 * const app: Application = {
 *   onConnect() {
 *     clients++;
 *   },
 *   onClose() {
 *     clients--;
 *   },
 * };
 * assert.equal(typeof app.onConnect, "function");
 * assert.equal(clients, 0);
 * ```
 *
 * @example Authenticating in the handshake
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Application } from "./mod.ts";
 *
 * const app: Application = {
 *   onHandshake(request) {
 *     const token = new URL(request.url).searchParams.get("token");
 *     if (token !== "let-me-in") {
 *       return new Response("unauthorized\n", { status: 401 });
 *     }
 *     return { info: { user: "alice" } };
 *   },
 * };
 * const refused = await app.onHandshake!(new Request("http://localhost/"), {
 *   api: {} as never,
 *   service: { nodeId: "k2j4m6p8r0t2", name: "A" },
 *   remoteAddr: { hostname: "127.0.0.1", port: 40000 },
 * });
 * assert.ok(refused instanceof Response);
 * assert.equal(refused.status, 401);
 * ```
 */
export interface Application {
  /**
   * Runs once when the service has joined the cluster (a register sent it
   * the member list), before it accepts clients: the place for the
   * application's own set-up. It never runs on a service that no register
   * answered (see `joinTimeoutMs`). `startService` resolves after it; when
   * it throws or rejects, the service closes and `startService` rejects
   * with that error. It also runs when `service.reload` puts this
   * application in place of another, before the swap.
   */
  onStart?(ctx: Context): void | Promise<void>;
  /**
   * Runs once when the service closes, after every client was closed (1001)
   * and its `onClose` finished, and before the service stops talking to its
   * peers: the place for the application's own clean-up. The Api still
   * reaches the clients of the other services. A failure is logged;
   * `close()` waits for it at most until `shutdownTimeoutMs` runs out. It
   * also runs when `service.reload` replaced this application, once its
   * running hooks settled, while the clients stay connected.
   */
  onStop?(ctx: Context): void | Promise<void>;
  /**
   * Decides on a WebSocket upgrade request before any WebSocket exists (the
   * place for authentication): return a `Response` to refuse the client
   * with it, or nothing or `{ info }` to accept it. Runs after the
   * `allowedOrigins` check. When it throws or rejects, the client is
   * refused with 500 and the error is logged.
   */
  onHandshake?(
    request: Request,
    ctx: HandshakeContext,
  ): HandshakeResult | Promise<HandshakeResult>;
  /**
   * A client connected. It is registered already: the Api can address it,
   * and what is sent to it here arrives before anything else.
   */
  onConnect?(clientId: string, ctx: ConnectContext): void | Promise<void>;
  /**
   * A client sent a message: a string for a text frame, a `Uint8Array` for a
   * binary frame.
   */
  onMessage?(
    clientId: string,
    message: Message,
    ctx: Context,
  ): void | Promise<void>;
  /**
   * A client disconnected, or the service closed it. It has already left its
   * uid and groups, and the Api no longer reaches it. For a `wsgate.v1`
   * client whose connection broke, its session may be kept for a resume
   * (`ServiceOptions.recovery`): it is offline meanwhile, and its uid,
   * groups and info come back with it.
   */
  onClose?(clientId: string, ctx: Context): void | Promise<void>;
}
