// Node-local client state: the clients of this service and two-way indexes
// of their uids and groups. Synchronous, no I/O, no knowledge of peers. Its
// methods are named for what they do here (bind, join, toAll), apart from
// the names of the cluster-wide Api, whose calls are carried out with them.

import type { ClientInfo, Message } from "../../api.ts";
import {
  checkInfoSize,
  entryBytes,
  type InfoBounds,
  type InfoSize,
  infoSize,
  UNBOUNDED,
} from "./info_size.ts";

/** What the hub needs of a client's connection. */
export interface ClientSocket {
  /** Queues a message; a closed socket drops it. */
  send(message: Message): void;
  /** Starts a close handshake; a closed socket ignores it. */
  close(code: number, reason: string): void;
}

interface LocalClient {
  readonly socket: ClientSocket;
  uid: string | undefined;
  groups: Set<string> | undefined;
  info: ClientInfo;
  infoSize: InfoSize;
}

/**
 * Told when this service gains its first member of a uid or group, and
 * when it loses its last one (holder routing: internal/cluster/).
 * Called synchronously, inside the hub's method.
 */
export interface HoldingsObserver {
  held(kind: "uid" | "group", name: string): void;
  released(kind: "uid" | "group", name: string): void;
}

/** Options of {@linkcode LocalHub}. */
export interface LocalHubOptions {
  /**
   * Told when the first member of a uid or group comes and the last goes.
   *
   * @default {nobody}
   */
  readonly holdings?: HoldingsObserver | undefined;
  /**
   * How large one client's info map may grow through
   * {@linkcode LocalHub.replaceInfo} and {@linkcode LocalHub.mergeInfo}.
   *
   * @default {no bound}
   */
  readonly infoBounds?: InfoBounds;
}

/** The clients of this service, by clientId, uid and group. */
export class LocalHub {
  readonly #clients = new Map<string, LocalClient>();
  readonly #clientsOfUid = new Map<string, Set<string>>();
  readonly #clientsOfGroup = new Map<string, Set<string>>();
  readonly #infoBounds: InfoBounds;
  readonly #holdings: HoldingsObserver | undefined;

  constructor(options: LocalHubOptions = {}) {
    const { infoBounds = UNBOUNDED, holdings } = options;
    this.#infoBounds = infoBounds;
    this.#holdings = holdings;
  }

  /** How many clients this service holds. */
  get size(): number {
    return this.#clients.size;
  }

  /**
   * Adds a connected client, with its initial info map (from the
   * handshake; not held to the info bounds).
   */
  add(clientId: string, socket: ClientSocket, info: ClientInfo = {}): void {
    this.#clients.set(clientId, {
      socket,
      uid: undefined,
      groups: undefined,
      info,
      infoSize: infoSize(info),
    });
  }

  /** Removes a client with its uid and groups; false if it was not here. */
  remove(clientId: string): boolean {
    const client = this.#clients.get(clientId);
    if (client === undefined) return false;
    this.#unbind(clientId, client);
    if (client.groups !== undefined) {
      for (const group of client.groups) {
        if (removeFromIndex(this.#clientsOfGroup, group, clientId)) {
          this.#holdings?.released("group", group);
        }
      }
    }
    this.#clients.delete(clientId);
    return true;
  }

  has(clientId: string): boolean {
    return this.#clients.has(clientId);
  }

  clientIds(): IterableIterator<string> {
    return this.#clients.keys();
  }

  // ----------------------------------------------------------- uids

  /** Binds a client to a uid, replacing its old one; false if offline. */
  bind(clientId: string, uid: string): boolean {
    const client = this.#clients.get(clientId);
    if (client === undefined) return false;
    if (client.uid === uid) return true;
    this.#unbind(clientId, client);
    client.uid = uid;
    if (addToIndex(this.#clientsOfUid, uid, clientId)) {
      this.#holdings?.held("uid", uid);
    }
    return true;
  }

  unbind(clientId: string): void {
    const client = this.#clients.get(clientId);
    if (client !== undefined) this.#unbind(clientId, client);
  }

  #unbind(clientId: string, client: LocalClient): void {
    const uid = client.uid;
    if (uid === undefined) return;
    client.uid = undefined;
    if (removeFromIndex(this.#clientsOfUid, uid, clientId)) {
      this.#holdings?.released("uid", uid);
    }
  }

  uidOf(clientId: string): string | undefined {
    return this.#clients.get(clientId)?.uid;
  }

  hasUid(uid: string): boolean {
    return this.#clientsOfUid.has(uid);
  }

  clientsOfUid(uid: string): Iterable<string> {
    return this.#clientsOfUid.get(uid) ?? [];
  }

  uids(): IterableIterator<string> {
    return this.#clientsOfUid.keys();
  }

  get uidCount(): number {
    return this.#clientsOfUid.size;
  }

  /** How many non-empty groups there are. */
  get groupCount(): number {
    return this.#clientsOfGroup.size;
  }

  // ----------------------------------------------------------- groups

  /** Adds a client to a group; false if offline. */
  join(clientId: string, group: string): boolean {
    const client = this.#clients.get(clientId);
    if (client === undefined) return false;
    (client.groups ??= new Set()).add(group);
    if (addToIndex(this.#clientsOfGroup, group, clientId)) {
      this.#holdings?.held("group", group);
    }
    return true;
  }

  leave(clientId: string, group: string): void {
    const client = this.#clients.get(clientId);
    if (client?.groups === undefined || !client.groups.delete(group)) return;
    if (client.groups.size === 0) client.groups = undefined;
    if (removeFromIndex(this.#clientsOfGroup, group, clientId)) {
      this.#holdings?.released("group", group);
    }
  }

  /** Removes every member of a group. */
  disband(group: string): void {
    const members = this.#clientsOfGroup.get(group);
    if (members === undefined) return;
    this.#clientsOfGroup.delete(group);
    for (const clientId of members) {
      const client = this.#clients.get(clientId);
      if (client?.groups === undefined) continue;
      client.groups.delete(group);
      if (client.groups.size === 0) client.groups = undefined;
    }
    this.#holdings?.released("group", group);
  }

  clientsOfGroup(group: string): Iterable<string> {
    return this.#clientsOfGroup.get(group) ?? [];
  }

  groupSize(group: string): number {
    return this.#clientsOfGroup.get(group)?.size ?? 0;
  }

  /** The distinct uids of a group's members. */
  uidsOfGroup(group: string): Set<string> {
    const uids = new Set<string>();
    for (const clientId of this.clientsOfGroup(group)) {
      const uid = this.#clients.get(clientId)?.uid;
      if (uid !== undefined) uids.add(uid);
    }
    return uids;
  }

  groups(): IterableIterator<string> {
    return this.#clientsOfGroup.keys();
  }

  // ----------------------------------------------------------- info

  infoOf(clientId: string): ClientInfo | undefined {
    const info = this.#clients.get(clientId)?.info;
    return info === undefined ? undefined : { ...info };
  }

  /**
   * Replaces a client's info map; a client that is not here is a no-op.
   *
   * @throws {GatewayError} `invalid_argument` when `info` is past the info
   * bounds; the map is left as it was.
   */
  replaceInfo(clientId: string, info: ClientInfo): void {
    const client = this.#clients.get(clientId);
    if (client === undefined) return;
    const size = infoSize(info);
    this.#checkInfo("set info", clientId, size, client.infoSize);
    client.info = { ...info };
    client.infoSize = size;
  }

  /**
   * Merges `info` into a client's info map; a client that is not here is
   * a no-op. Costs as much as `info`, not as the map.
   *
   * @throws {GatewayError} `invalid_argument` when the merged map would be
   * past the info bounds; the map is left as it was.
   */
  mergeInfo(clientId: string, info: ClientInfo): void {
    const client = this.#clients.get(clientId);
    if (client === undefined) return;
    const old = client.info;
    let { keys, bytes } = client.infoSize;
    for (const key in info) {
      if (!Object.hasOwn(info, key)) continue;
      if (Object.hasOwn(old, key)) {
        bytes += entryBytes(key, info[key]!) - entryBytes(key, old[key]!);
      } else {
        keys++;
        bytes += entryBytes(key, info[key]!);
      }
    }
    const size = { keys, bytes };
    this.#checkInfo("update info", clientId, size, client.infoSize);
    client.info = { ...old, ...info };
    client.infoSize = size;
  }

  #checkInfo(
    action: string,
    clientId: string,
    size: InfoSize,
    now: InfoSize,
  ): void {
    checkInfoSize(
      action,
      `the info of client ${JSON.stringify(clientId)}`,
      size,
      this.#infoBounds,
      now,
    );
  }

  /** Copies of the info maps of the given clients (all when omitted). */
  infos(clientIds?: Iterable<string>): Record<string, ClientInfo> {
    const out: Record<string, ClientInfo> = {};
    if (clientIds === undefined) {
      for (const [id, client] of this.#clients) out[id] = { ...client.info };
    } else {
      for (const id of clientIds) {
        const client = this.#clients.get(id);
        if (client !== undefined) out[id] = { ...client.info };
      }
    }
    return out;
  }

  // ----------------------------------------------------------- delivery

  toAll(message: Message, exclude?: ReadonlySet<string>): void {
    if (exclude === undefined || exclude.size === 0) {
      for (const client of this.#clients.values()) client.socket.send(message);
      return;
    }
    for (const [id, client] of this.#clients) {
      if (!exclude.has(id)) client.socket.send(message);
    }
  }

  toClient(clientId: string, message: Message): void {
    this.#clients.get(clientId)?.socket.send(message);
  }

  toUids(uids: readonly string[], message: Message): void {
    if (uids.length === 1) {
      this.#toEach(this.#clientsOfUid.get(uids[0]!), message);
      return;
    }
    // A client has one uid, so no client is in two of the sets.
    for (const uid of new Set(uids)) {
      this.#toEach(this.#clientsOfUid.get(uid), message);
    }
  }

  toGroups(
    groups: readonly string[],
    message: Message,
    exclude?: ReadonlySet<string>,
  ): void {
    if (groups.length === 1 && (exclude === undefined || exclude.size === 0)) {
      this.#toEach(this.#clientsOfGroup.get(groups[0]!), message);
      return;
    }
    const sent = new Set<string>(exclude);
    for (const group of groups) {
      const members = this.#clientsOfGroup.get(group);
      if (members === undefined) continue;
      for (const id of members) {
        if (sent.has(id)) continue;
        sent.add(id);
        this.#clients.get(id)?.socket.send(message);
      }
    }
  }

  #toEach(clientIds: Set<string> | undefined, message: Message): void {
    if (clientIds === undefined) return;
    for (const id of clientIds) this.#clients.get(id)?.socket.send(message);
  }

  /** Closes a client normally, after a last message if given. */
  close(clientId: string, lastMessage?: Message): void {
    const client = this.#clients.get(clientId);
    if (client === undefined) return;
    if (lastMessage !== undefined) client.socket.send(lastMessage);
    client.socket.close(1000, "");
  }

  /** Closes every client with the given code. */
  closeAll(code: number, reason: string): void {
    for (const client of this.#clients.values()) {
      client.socket.close(code, reason);
    }
  }
}

/** Adds to an index; true when `key` is new in it. */
function addToIndex(
  index: Map<string, Set<string>>,
  key: string,
  clientId: string,
): boolean {
  const set = index.get(key);
  if (set !== undefined) {
    set.add(clientId);
    return false;
  }
  index.set(key, new Set([clientId]));
  return true;
}

/** Removes from an index; true when `key` left it. */
function removeFromIndex(
  index: Map<string, Set<string>>,
  key: string,
  clientId: string,
): boolean {
  const set = index.get(key);
  if (set === undefined) return false;
  set.delete(clientId);
  if (set.size > 0) return false;
  index.delete(key);
  return true;
}
