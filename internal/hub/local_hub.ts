// Node-local client state: the clients of this service and two-way indexes
// of their uids and groups. Synchronous, no I/O, no knowledge of peers. Its
// methods are named for what they do here (bind, join, toAll), apart from
// the names of the cluster-wide Api, whose calls are carried out with them.
// A detached client (a session whose connection broke, kept for a resume)
// is kept apart, with indexes of its own: what is sent to it still reaches
// its socket (the session), but it is offline to every query.

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
  socket: ClientSocket;
  uid: string | undefined;
  groups: Set<string> | undefined;
  info: ClientInfo;
  infoSize: InfoSize;
}

/** The clientIds of each uid and each group. */
interface Indexes {
  readonly uids: Map<string, Set<string>>;
  readonly groups: Map<string, Set<string>>;
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
  readonly #detached = new Map<string, LocalClient>();
  readonly #detachedOfUid = new Map<string, Set<string>>();
  readonly #detachedOfGroup = new Map<string, Set<string>>();
  readonly #online: Indexes = {
    uids: this.#clientsOfUid,
    groups: this.#clientsOfGroup,
  };
  readonly #offline: Indexes = {
    uids: this.#detachedOfUid,
    groups: this.#detachedOfGroup,
  };
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

  /**
   * Removes a client, online or detached, with its uid and groups; false
   * if it was not here.
   */
  remove(clientId: string): boolean {
    const client = this.#clients.get(clientId);
    if (client === undefined) {
      const detached = this.#detached.get(clientId);
      if (detached === undefined) return false;
      this.#move(clientId, detached, this.#offline, undefined);
      this.#detached.delete(clientId);
      if (detached.uid !== undefined) this.#lost("uid", detached.uid);
      if (detached.groups !== undefined) {
        for (const group of detached.groups) this.#lost("group", group);
      }
      return true;
    }
    this.#unbind(clientId, client);
    if (client.groups !== undefined) {
      for (const group of client.groups) {
        if (removeFromIndex(this.#clientsOfGroup, group, clientId)) {
          this.#lost("group", group);
        }
      }
    }
    this.#clients.delete(clientId);
    return true;
  }

  /**
   * Takes an online client offline and keeps it, with its uid, groups and
   * info: what is sent to it still reaches its socket, but no query sees
   * it until {@linkcode reattach}; false if it was not online.
   */
  detach(clientId: string): boolean {
    const client = this.#clients.get(clientId);
    if (client === undefined) return false;
    this.#clients.delete(clientId);
    this.#detached.set(clientId, client);
    this.#move(clientId, client, this.#online, this.#offline);
    return true;
  }

  /** Brings a detached client online again; false if it was not detached. */
  reattach(clientId: string): boolean {
    const client = this.#detached.get(clientId);
    if (client === undefined) return false;
    this.#detached.delete(clientId);
    this.#clients.set(clientId, client);
    this.#move(clientId, client, this.#offline, this.#online);
    return true;
  }

  /**
   * Gives a client, online or detached, another socket, keeping its uid,
   * groups and info (a session takeover puts a gate in front of the
   * session, or the session in place of a pending client); false if it is
   * not here.
   */
  replaceSocket(clientId: string, socket: ClientSocket): boolean {
    const client = this.#clients.get(clientId) ?? this.#detached.get(clientId);
    if (client === undefined) return false;
    client.socket = socket;
    return true;
  }

  /** How many detached clients this service keeps. */
  get detachedCount(): number {
    return this.#detached.size;
  }

  /**
   * The uid, groups and info of a detached client (for a session that
   * another service takes over); undefined if it is not detached.
   */
  detachedState(
    clientId: string,
  ):
    | { uid: string | undefined; groups: string[]; info: ClientInfo }
    | undefined {
    const client = this.#detached.get(clientId);
    if (client === undefined) return undefined;
    return {
      uid: client.uid,
      groups: client.groups === undefined ? [] : [...client.groups],
      info: { ...client.info },
    };
  }

  // Holdings count online and detached members alike: what is sent to a
  // detached one must still reach this service.

  /** An online index got its first member of `name`. */
  #gained(kind: "uid" | "group", name: string): void {
    if (this.#holdings === undefined) return;
    const detached = kind === "uid"
      ? this.#detachedOfUid
      : this.#detachedOfGroup;
    if (!detached.has(name)) this.#holdings.held(kind, name);
  }

  /** An index lost a member of `name`; told when none is left in either. */
  #lost(kind: "uid" | "group", name: string): void {
    if (this.#holdings === undefined) return;
    const [online, detached] = kind === "uid"
      ? [this.#clientsOfUid, this.#detachedOfUid]
      : [this.#clientsOfGroup, this.#detachedOfGroup];
    if (!online.has(name) && !detached.has(name)) {
      this.#holdings.released(kind, name);
    }
  }

  /** Moves a client's uid and groups from one pair of indexes to another. */
  #move(
    clientId: string,
    client: LocalClient,
    from: Indexes | undefined,
    to: Indexes | undefined,
  ): void {
    if (client.uid !== undefined) {
      if (from !== undefined) removeFromIndex(from.uids, client.uid, clientId);
      if (to !== undefined) addToIndex(to.uids, client.uid, clientId);
    }
    if (client.groups === undefined) return;
    for (const group of client.groups) {
      if (from !== undefined) removeFromIndex(from.groups, group, clientId);
      if (to !== undefined) addToIndex(to.groups, group, clientId);
    }
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
      this.#gained("uid", uid);
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
      this.#lost("uid", uid);
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
      this.#gained("group", group);
    }
    return true;
  }

  leave(clientId: string, group: string): void {
    const client = this.#clients.get(clientId);
    if (client?.groups === undefined || !client.groups.delete(group)) return;
    if (client.groups.size === 0) client.groups = undefined;
    if (removeFromIndex(this.#clientsOfGroup, group, clientId)) {
      this.#lost("group", group);
    }
  }

  /** Removes every member of a group, detached ones too. */
  disband(group: string): void {
    disbandIn(group, this.#clientsOfGroup, this.#clients);
    if (this.#detachedOfGroup.size > 0) {
      disbandIn(group, this.#detachedOfGroup, this.#detached);
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

  /** Sends to every client, detached ones too (their sessions keep it). */
  toAll(message: Message, exclude?: ReadonlySet<string>): void {
    toAllIn(this.#clients, message, exclude);
    if (this.#detached.size > 0) toAllIn(this.#detached, message, exclude);
  }

  toClient(clientId: string, message: Message): void {
    (this.#clients.get(clientId) ?? this.#detached.get(clientId))?.socket
      .send(message);
  }

  toUids(uids: readonly string[], message: Message): void {
    const detached = this.#detachedOfUid.size > 0;
    if (uids.length === 1) {
      this.#toEach(this.#clientsOfUid.get(uids[0]!), message);
      if (detached) this.#toEach(this.#detachedOfUid.get(uids[0]!), message);
      return;
    }
    // A client has one uid, so no client is in two of the sets.
    for (const uid of new Set(uids)) {
      this.#toEach(this.#clientsOfUid.get(uid), message);
      if (detached) this.#toEach(this.#detachedOfUid.get(uid), message);
    }
  }

  toGroups(
    groups: readonly string[],
    message: Message,
    exclude?: ReadonlySet<string>,
  ): void {
    const detached = this.#detachedOfGroup.size > 0;
    if (groups.length === 1 && (exclude === undefined || exclude.size === 0)) {
      this.#toEach(this.#clientsOfGroup.get(groups[0]!), message);
      if (detached) {
        this.#toEach(this.#detachedOfGroup.get(groups[0]!), message);
      }
      return;
    }
    const sent = new Set<string>(exclude);
    toMembersIn(groups, this.#clientsOfGroup, this.#clients, sent, message);
    if (detached) {
      toMembersIn(groups, this.#detachedOfGroup, this.#detached, sent, message);
    }
  }

  #toEach(clientIds: Set<string> | undefined, message: Message): void {
    if (clientIds === undefined) return;
    for (const id of clientIds) {
      (this.#clients.get(id) ?? this.#detached.get(id))?.socket.send(message);
    }
  }

  /**
   * Closes a client normally, after a last message if given; a detached
   * client's socket (its session) is closed too, which ends it.
   */
  close(clientId: string, lastMessage?: Message): void {
    const client = this.#clients.get(clientId) ?? this.#detached.get(clientId);
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

function toAllIn(
  clients: Map<string, LocalClient>,
  message: Message,
  exclude: ReadonlySet<string> | undefined,
): void {
  if (exclude === undefined || exclude.size === 0) {
    for (const client of clients.values()) client.socket.send(message);
    return;
  }
  for (const [id, client] of clients) {
    if (!exclude.has(id)) client.socket.send(message);
  }
}

/** Sends once to each member of the groups that is not in `sent`. */
function toMembersIn(
  groups: readonly string[],
  index: Map<string, Set<string>>,
  clients: Map<string, LocalClient>,
  sent: Set<string>,
  message: Message,
): void {
  for (const group of groups) {
    const members = index.get(group);
    if (members === undefined) continue;
    for (const id of members) {
      if (sent.has(id)) continue;
      sent.add(id);
      clients.get(id)?.socket.send(message);
    }
  }
}

function disbandIn(
  group: string,
  index: Map<string, Set<string>>,
  clients: Map<string, LocalClient>,
): void {
  const members = index.get(group);
  if (members === undefined) return;
  index.delete(group);
  for (const clientId of members) {
    const client = clients.get(clientId);
    if (client?.groups === undefined) continue;
    client.groups.delete(group);
    if (client.groups.size === 0) client.groups = undefined;
  }
}

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
