/**
 * The {@linkcode Api}: what business code uses, from any service, about any
 * client of the cluster.
 *
 * @module
 */

/**
 * A WebSocket message. A string goes out as a text frame, bytes as a binary
 * frame.
 *
 * @example Text and binary messages
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Message } from "./mod.ts";
 *
 * const text: Message = "hello";
 * const binary: Message = new Uint8Array([0x01, 0x02]);
 * assert.equal(typeof text, "string");
 * assert.ok(binary instanceof Uint8Array);
 * ```
 */
export type Message = string | Uint8Array;

/**
 * A client's info map: string keys and string values, set with
 * {@linkcode Api.setInfo} or {@linkcode Api.updateInfo}.
 *
 * @example Tagging a client at connect time
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Application, ClientInfo } from "./mod.ts";
 *
 * const app: Application = {
 *   async onConnect(clientId, { api }) {
 *     const info: ClientInfo = { plan: "pro", region: "eu" };
 *     await api.setInfo(clientId, info);
 *   },
 * };
 * assert.equal(typeof app.onConnect, "function");
 * ```
 */
export type ClientInfo = Record<string, string>;

/**
 * Options for {@linkcode Api.sendToAll} and {@linkcode Api.sendToGroup}.
 *
 * @example Sending to everyone but the sender
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Application, SendOptions } from "./mod.ts";
 *
 * const app: Application = {
 *   async onMessage(clientId, message, { api }) {
 *     const options: SendOptions = { exclude: [clientId] };
 *     await api.sendToAll(message, options);
 *   },
 * };
 * assert.equal(typeof app.onMessage, "function");
 * ```
 */
export interface SendOptions {
  /**
   * ClientIds that must not get the message.
   *
   * @default {[]}
   */
  exclude?: readonly string[];
}

/**
 * Everything business code can do with the clients of the cluster, from any
 * service, about clients on any service.
 *
 * Calls about one client (`sendToClient`, `bindUid`, `getInfo`, ...) go to the
 * one service that holds it, or to none when it is local. Calls about all
 * clients, uids or groups ask every service in parallel and merge the answers.
 *
 * Every method validates its arguments and rejects bad ones with a
 * {@linkcode GatewayError} whose code is `invalid_argument`. A well-formed
 * clientId whose service is gone counts as offline: sends to it do nothing,
 * queries answer as for an offline client. When some services cannot be
 * reached within the deadline, cluster-wide calls reject with an
 * {@linkcode IncompleteResultError} that carries what the others answered.
 *
 * Delivery is at most once. Messages that one service sends to one client
 * arrive in the order they were sent.
 *
 * @example Greeting every client and counting them
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
 * await service.api.sendToAll("hello");
 * assert.equal(await service.api.getAllClientCount(), 0);
 * ```
 *
 * @example An echo application: hooks answer through `ctx.api`
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Application, startRegister, startService } from "./mod.ts";
 *
 * const app: Application = {
 *   async onConnect(clientId, { api }) {
 *     await api.sendToClient(clientId, `welcome ${clientId}`);
 *   },
 *   async onMessage(clientId, message, { api }) {
 *     await api.sendToClient(clientId, message);
 *   },
 * };
 * await using register = await startRegister({ hostname: "127.0.0.1", port: 0 });
 * await using service = await startService(app, {
 *   register: `127.0.0.1:${register.port}`,
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   rpcPort: 0,
 * });
 * const socket = new WebSocket(`ws://127.0.0.1:${service.port}/`);
 * const received: unknown[] = [];
 * const echoed = new Promise((resolve) => {
 *   socket.onmessage = (e) => {
 *     received.push(e.data);
 *     if (received.length === 1) socket.send("ping");
 *     else resolve(e.data);
 *   };
 * });
 * assert.equal(await echoed, "ping");
 * assert.match(String(received[0]), /^welcome /);
 * socket.close();
 * await new Promise((resolve) => socket.onclose = resolve);
 * ```
 *
 * @example Binding the user that the handshake accepted, and finding it again
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Application, startRegister, startService } from "./mod.ts";
 *
 * const app: Application = {
 *   onHandshake(request) {
 *     const user = new URL(request.url).searchParams.get("user");
 *     if (user === null) return new Response("who are you?\n", { status: 401 });
 *     return { info: { user } };
 *   },
 *   async onConnect(clientId, { api }) {
 *     const info = await api.getInfo(clientId);
 *     await api.bindUid(clientId, info!.user!);
 *     await api.sendToClient(clientId, "ready");
 *   },
 * };
 * await using register = await startRegister({ hostname: "127.0.0.1", port: 0 });
 * await using service = await startService(app, {
 *   register: `127.0.0.1:${register.port}`,
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   rpcPort: 0,
 * });
 * const socket = new WebSocket(`ws://127.0.0.1:${service.port}/?user=alice`);
 * await new Promise((resolve) => socket.onmessage = resolve);
 * const [clientId] = await service.api.getClientIdsByUid("alice");
 * assert.ok(clientId?.startsWith(`${service.nodeId}.`));
 * assert.equal(await service.api.getUidByClientId(clientId!), "alice");
 * socket.close();
 * await new Promise((resolve) => socket.onclose = resolve);
 * ```
 */
export interface Api {
  /** Sends to every client of the cluster, minus `options.exclude`. */
  sendToAll(message: Message, options?: SendOptions): Promise<void>;
  /** Sends to one client; an offline client is a no-op. */
  sendToClient(clientId: string, message: Message): Promise<void>;
  /** Sends to every client bound to the uid, or to any of the uids. */
  sendToUid(uid: string | readonly string[], message: Message): Promise<void>;
  /**
   * Sends to every client in the group, or in any of the groups, minus
   * `options.exclude`. A client in two of the groups gets it once.
   */
  sendToGroup(
    group: string | readonly string[],
    message: Message,
    options?: SendOptions,
  ): Promise<void>;

  /**
   * Binds the client to the uid. A client has at most one uid: binding again
   * replaces it. An offline client is a no-op.
   */
  bindUid(clientId: string, uid: string): Promise<void>;
  /** Removes the client's uid, if any. */
  unbindUid(clientId: string): Promise<void>;
  /** Whether any client anywhere is bound to the uid. */
  isUidOnline(uid: string): Promise<boolean>;
  /** The client's uid; `undefined` when it has none or is offline. */
  getUidByClientId(clientId: string): Promise<string | undefined>;
  /** The clients bound to the uid, on every service. */
  getClientIdsByUid(uid: string): Promise<string[]>;

  /** Adds the client to the group. An offline client is a no-op. */
  joinGroup(clientId: string, group: string): Promise<void>;
  /** Removes the client from the group. An empty group vanishes. */
  leaveGroup(clientId: string, group: string): Promise<void>;
  /** Removes every member of the group, on every service. */
  ungroup(group: string): Promise<void>;
  /** How many clients are in the group, on every service. */
  getClientCountByGroup(group: string): Promise<number>;
  /** The clients in the group, on every service. */
  getClientIdsByGroup(group: string): Promise<string[]>;
  /** The distinct uids of the clients in the group. */
  getUidsByGroup(group: string): Promise<string[]>;
  /** How many distinct uids the clients in the group have. */
  getUidCountByGroup(group: string): Promise<number>;

  /** Every uid bound anywhere, each once. */
  getAllUids(): Promise<string[]>;
  /**
   * Every uid bound anywhere, each once: the name the first versions had.
   *
   * @deprecated Use {@linkcode Api.getAllUids}, the same call.
   */
  getAllUid(): Promise<string[]>;
  /** How many distinct uids are bound anywhere. */
  getAllUidCount(): Promise<number>;
  /** Every non-empty group, each once. */
  getAllGroups(): Promise<string[]>;
  /** Every clientId of the cluster. */
  getAllClientIds(): Promise<string[]>;
  /** How many clients the cluster holds. */
  getAllClientCount(): Promise<number>;
  /** Whether the client is connected. */
  isOnline(clientId: string): Promise<boolean>;
  /**
   * Closes the client with a normal close (1000), after `message` if given.
   * An offline client is a no-op.
   */
  closeClient(clientId: string, message?: Message): Promise<void>;

  /** The client's info map; `undefined` when it is offline. */
  getInfo(clientId: string): Promise<ClientInfo | undefined>;
  /**
   * Replaces the client's info map. An offline client is a no-op. A map of
   * more than `maxInfoKeys` keys or `maxInfoBytes` bytes (options of the
   * service; UTF-8 of keys and values) is refused with `invalid_argument`,
   * and the old map stays.
   */
  setInfo(clientId: string, info: ClientInfo): Promise<void>;
  /**
   * Merges `info` into the client's info map. An offline client is a no-op.
   * When the merged map would have more than `maxInfoKeys` keys or
   * `maxInfoBytes` bytes, the call is refused with `invalid_argument`
   * (its message says which limit, and the sizes), and the map stays as it
   * was.
   */
  updateInfo(clientId: string, info: ClientInfo): Promise<void>;
  /** The info maps of the clients in the group, by clientId. */
  getClientInfosByGroup(group: string): Promise<Record<string, ClientInfo>>;
  /** The info maps of every client, by clientId. */
  getAllClientInfos(): Promise<Record<string, ClientInfo>>;
}
