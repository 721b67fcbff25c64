// Which peer services hold members of each uid and group, as their holder
// announcements say (KIND.HOLD_RESET, HOLD, RELEASE and HOLD_SYNCED on the
// delivery links, wire.ts), and so which peers a call about a uid or group
// goes to (cluster_api.ts). holder_announcer.ts is the sending end.
//
// Memory-lean: a name held by one service maps to that service's node id
// (the one string of its connection, shared by all its entries); only a
// name held by two or more services gets a Set. Uids and groups are kept
// apart.
//
// Safe by default: a peer whose snapshot has not arrived yet, whose link
// broke since, or that never sends one (a version without holder routing)
// counts as holder of every name, so it gets what every peer got before
// holder routing. A stale holder costs a useless delivery; a missed one
// would lose messages, so a peer is trusted only between its complete
// snapshot and the end of the connection that carried it.

import type { HoldingsStream } from "../delivery/codec.ts";
import { HOLDING, type Holding } from "../delivery/wire.ts";

/** Uids or groups. */
export type HolderKind = "uid" | "group";

/** One holder's node id, or the Set of two or more. */
type Holders = string | Set<string>;

/** What the index knows of one peer's announcements. */
interface Sender {
  /** The epoch of its last accepted HOLD_RESET. */
  epoch: number;
  /** Its snapshot of that epoch is complete, and its connection is up. */
  synced: boolean;
  /** How many names list it. */
  entries: number;
}

/** Options of {@linkcode HolderIndex}. */
export interface HolderIndexOptions {
  /**
   * How long the holdings of a peer that left the member list are kept,
   * in milliseconds, in case it comes back (a register that lost it for a
   * moment) while its connection still carries its announcements; they
   * are dropped at the first member list change after that, or when the
   * connection ends.
   *
   * @default {60000}
   */
  readonly departedGraceMs?: number;
}

/** A member of the cluster, as the index needs it. */
export interface HolderMember {
  readonly nodeId: string;
  readonly rpcAddress: string;
}

/**
 * The holders of every uid and group among this service's peers.
 *
 * @example Routing by announcements
 * ```ts ignore
 * const index = new HolderIndex("self");
 * index.retain([{ nodeId: "b", rpcAddress: "10.0.0.2:7000" }]);
 * index.peersFor("uid", ["alice"]); // ["10.0.0.2:7000"]: b sent no snapshot yet
 * const stream = index.openStream();
 * stream.reset("b", 1);
 * stream.hold(HOLDING.UID, ["alice"]);
 * stream.synced();
 * index.peersFor("uid", ["bob"]); // []
 * ```
 */
export class HolderIndex {
  readonly #self: string;
  readonly #uids = new Map<string, Holders>();
  readonly #groups = new Map<string, Holders>();
  readonly #senders = new Map<string, Sender>();
  /** The RPC address of every member but this service. */
  #addressOf = new Map<string, string>();
  /** The addresses of the members that are not synced. */
  #fallback: readonly string[] = [];
  /** Peers that left the member list, and when. */
  readonly #departed = new Map<string, number>();
  readonly #departedGraceMs: number;

  /**
   * @param selfNodeId This service's node id: never a holder here.
   * @param options How long a departed peer's holdings are kept.
   */
  constructor(selfNodeId: string, options: HolderIndexOptions = {}) {
    const { departedGraceMs = 60_000 } = options;
    this.#self = selfNodeId;
    this.#departedGraceMs = departedGraceMs;
  }

  /**
   * Records the member list: a peer that left it is not routed to, and
   * drops out of the index after `departedGraceMs`; members not synced
   * count as holders of every name.
   */
  retain(members: Iterable<HolderMember>): void {
    const next = new Map<string, string>();
    for (const m of members) {
      if (m.nodeId !== this.#self) next.set(m.nodeId, m.rpcAddress);
    }
    const now = Date.now();
    for (const nodeId of this.#addressOf.keys()) {
      if (!next.has(nodeId)) this.#departed.set(nodeId, now);
    }
    for (const [nodeId, since] of this.#departed) {
      if (next.has(nodeId)) {
        this.#departed.delete(nodeId);
      } else if (now - since >= this.#departedGraceMs) {
        this.#departed.delete(nodeId);
        this.#dropEntries(nodeId);
        this.#senders.delete(nodeId);
      }
    }
    this.#addressOf = next;
    this.#recompute();
  }

  /**
   * The addresses of the peers to reach about `names` (uids or groups):
   * their holders, and every peer that is not synced. Empty when no peer
   * holds any of them.
   */
  peersFor(kind: HolderKind, names: readonly string[]): readonly string[] {
    const map = kind === "uid" ? this.#uids : this.#groups;
    const fallback = this.#fallback;
    if (names.length === 1) {
      const holders = map.get(names[0]!);
      if (holders === undefined) return fallback;
      if (typeof holders === "string") {
        const address = this.#addressOf.get(holders);
        if (address === undefined || fallback.includes(address)) {
          return fallback;
        }
        return fallback.length === 0 ? [address] : [...fallback, address];
      }
    }
    const out = new Set(fallback);
    for (const name of names) {
      const holders = map.get(name);
      if (holders === undefined) continue;
      if (typeof holders === "string") this.#addAddress(out, holders);
      else for (const nodeId of holders) this.#addAddress(out, nodeId);
    }
    return [...out];
  }

  /** The node ids that hold `name`, as announced (tests, diagnostics). */
  holdersOf(kind: HolderKind, name: string): string[] {
    const holders = (kind === "uid" ? this.#uids : this.#groups).get(name);
    if (holders === undefined) return [];
    return typeof holders === "string" ? [holders] : [...holders];
  }

  /** Whether the peer `nodeId` sent a complete snapshot on a live link. */
  isSynced(nodeId: string): boolean {
    return this.#senders.get(nodeId)?.synced === true;
  }

  /** How many peers count as holders of everything (not synced). */
  get fallbackPeers(): number {
    return this.#fallback.length;
  }

  /** How many uids and groups have a holder among the peers. */
  get size(): number {
    return this.#uids.size + this.#groups.size;
  }

  /** Where the announcements of one connection from a peer go. */
  openStream(): HoldingsStream {
    return new IndexStream(this);
  }

  /**
   * Starts `nodeId`'s holdings over for `epoch`; false for a stale epoch
   * (an older connection's) or this service's own id.
   */
  reset(nodeId: string, epoch: number): boolean {
    if (nodeId === this.#self) return false;
    const sender = this.#senders.get(nodeId);
    if (sender !== undefined && epoch <= sender.epoch) return false;
    this.#dropEntries(nodeId);
    this.#senders.set(nodeId, { epoch, synced: false, entries: 0 });
    if (sender?.synced) this.#recompute();
    return true;
  }

  /** Whether `epoch` is `nodeId`'s current one. */
  current(nodeId: string, epoch: number): boolean {
    return this.#senders.get(nodeId)?.epoch === epoch;
  }

  /** `nodeId` holds `names` now. */
  hold(nodeId: string, holding: Holding, names: readonly string[]): void {
    const sender = this.#senders.get(nodeId);
    if (sender === undefined) return;
    const map = this.#mapOf(holding);
    for (const name of names) {
      const holders = map.get(name);
      if (holders === undefined) {
        map.set(name, nodeId);
      } else if (typeof holders === "string") {
        if (holders === nodeId) continue;
        map.set(name, new Set([holders, nodeId]));
      } else {
        if (holders.has(nodeId)) continue;
        holders.add(nodeId);
      }
      sender.entries++;
    }
  }

  /** `nodeId` holds none of `names` any more. */
  release(nodeId: string, holding: Holding, names: readonly string[]): void {
    const sender = this.#senders.get(nodeId);
    if (sender === undefined) return;
    const map = this.#mapOf(holding);
    for (const name of names) {
      if (removeHolder(map, name, nodeId)) sender.entries--;
    }
  }

  /** `nodeId`'s snapshot is complete: it is trusted from now on. */
  synced(nodeId: string): void {
    const sender = this.#senders.get(nodeId);
    if (sender === undefined || sender.synced) return;
    sender.synced = true;
    this.#recompute();
  }

  /**
   * The connection that carried `nodeId`'s announcements ended: it counts
   * as holder of everything until a new snapshot arrives.
   */
  lost(nodeId: string): void {
    const sender = this.#senders.get(nodeId);
    if (sender === undefined) return;
    this.#dropEntries(nodeId);
    const wasSynced = sender.synced;
    sender.synced = false;
    if (wasSynced) this.#recompute();
  }

  #mapOf(holding: Holding): Map<string, Holders> {
    return holding === HOLDING.UID ? this.#uids : this.#groups;
  }

  #addAddress(out: Set<string>, nodeId: string): void {
    const address = this.#addressOf.get(nodeId);
    if (address !== undefined) out.add(address);
  }

  /** Removes `nodeId` from every name (a scan, on resets and losses only). */
  #dropEntries(nodeId: string): void {
    const sender = this.#senders.get(nodeId);
    if (sender === undefined || sender.entries === 0) return;
    for (const map of [this.#uids, this.#groups]) {
      for (const [name, holders] of map) {
        if (holders === nodeId) map.delete(name);
        else if (typeof holders !== "string") removeHolder(map, name, nodeId);
      }
    }
    sender.entries = 0;
  }

  #recompute(): void {
    const fallback = new Set<string>();
    for (const [nodeId, address] of this.#addressOf) {
      if (this.#senders.get(nodeId)?.synced !== true) fallback.add(address);
    }
    this.#fallback = [...fallback];
  }
}

/** Removes one holder of `name`; true when it was one. */
function removeHolder(
  map: Map<string, Holders>,
  name: string,
  nodeId: string,
): boolean {
  const holders = map.get(name);
  if (holders === undefined) return false;
  if (typeof holders === "string") {
    if (holders !== nodeId) return false;
    map.delete(name);
    return true;
  }
  if (!holders.delete(nodeId)) return false;
  if (holders.size === 1) map.set(name, holders.values().next().value!);
  return true;
}

/** The announcements of one connection: they belong to its last reset. */
class IndexStream implements HoldingsStream {
  readonly #index: HolderIndex;
  #nodeId: string | undefined;
  #epoch = 0;

  constructor(index: HolderIndex) {
    this.#index = index;
  }

  reset(nodeId: string, epoch: number): void {
    if (this.#index.reset(nodeId, epoch)) {
      this.#nodeId = nodeId;
      this.#epoch = epoch;
    } else {
      this.#nodeId = undefined;
    }
  }

  hold(holding: Holding, names: readonly string[]): void {
    const nodeId = this.#current();
    if (nodeId !== undefined) this.#index.hold(nodeId, holding, names);
  }

  release(holding: Holding, names: readonly string[]): void {
    const nodeId = this.#current();
    if (nodeId !== undefined) this.#index.release(nodeId, holding, names);
  }

  synced(): void {
    const nodeId = this.#current();
    if (nodeId !== undefined) this.#index.synced(nodeId);
  }

  end(): void {
    const nodeId = this.#current();
    if (nodeId !== undefined) this.#index.lost(nodeId);
    this.#nodeId = undefined;
  }

  /** The sender, while this connection's epoch is its current one. */
  #current(): string | undefined {
    const nodeId = this.#nodeId;
    return nodeId !== undefined && this.#index.current(nodeId, this.#epoch)
      ? nodeId
      : undefined;
  }
}
