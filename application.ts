/**
 * The {@linkcode Application}: the business code's hooks, called by a
 * service for each of its clients.
 *
 * @module
 */

import type { Api, Message } from "./api.ts";

/**
 * What every hook gets besides the clientId.
 *
 * @example Answering through the Api of the context
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Application, Context } from "./mod.ts";
 *
 * async function echo(clientId: string, message: string | Uint8Array, ctx: Context) {
 *   await ctx.api.sendToClient(clientId, message);
 * }
 * const app: Application = { onMessage: echo };
 * assert.equal(app.onMessage, echo);
 * ```
 */
export interface Context {
  /** The cluster-wide Api. */
  readonly api: Api;
}

/**
 * What {@linkcode Application.onConnect} gets.
 *
 * @example Binding the uid named in the WebSocket URL
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Application, ConnectContext } from "./mod.ts";
 *
 * const app: Application = {
 *   async onConnect(clientId: string, { api, request }: ConnectContext) {
 *     const uid = new URL(request.url).searchParams.get("uid");
 *     if (uid !== null) await api.bindUid(clientId, uid);
 *   },
 * };
 * assert.equal(typeof app.onConnect, "function");
 * ```
 */
export interface ConnectContext extends Context {
  /** The HTTP request that asked for the WebSocket upgrade. */
  readonly request: Request;
}

/**
 * Business code: optional hooks that a service calls for each of its
 * clients. For one client the hooks run one after another, never
 * overlapping: `onConnect` finishes (its promise settles) before the first
 * `onMessage`, each `onMessage` before the next, and `onClose` runs exactly
 * once, after the last `onMessage`. A hook that throws or rejects is logged
 * and affects nothing else.
 *
 * @example An echo application
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Application } from "./mod.ts";
 *
 * const app: Application = {
 *   async onConnect(clientId, { api }) {
 *     await api.sendToClient(clientId, `welcome ${clientId}`);
 *   },
 *   async onMessage(clientId, message, { api }) {
 *     await api.sendToClient(clientId, message);
 *   },
 * };
 * assert.equal(typeof app.onMessage, "function");
 * ```
 */
export interface Application {
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
   * A client disconnected. It has already left its uid and groups, and the
   * Api no longer reaches it.
   */
  onClose?(clientId: string, ctx: Context): void | Promise<void>;
}
