// The service side of membership: the member lists that each register last
// pushed, and the effective member list made from them.

/** A service of the cluster. */
export interface Member {
  readonly nodeId: string;
  readonly rpcAddress: string;
}

interface Source {
  members: readonly Member[];
  live: boolean;
}

/** Options of {@linkcode MemberTable}. */
export interface MemberTableOptions {
  /**
   * After an outage of every register, how long the members known before it
   * are kept beside what the returning registers push, in milliseconds: a
   * register that restarted knows only the services that re-joined so far,
   * and the others re-join within their backoff.
   */
  readonly settleMs: number;
}

/**
 * Merges the member lists of several registers. The effective list is the
 * union of the lists of the registers that are connected now; while none is
 * connected it is the union of the last lists each one pushed, so the
 * cluster keeps working through a register outage. When a register comes
 * back after such an outage, the members known before it stay for
 * `settleMs` more, so that the list does not shrink while services re-join.
 */
export class MemberTable {
  readonly #self: string;
  readonly #settleMs: number;
  readonly #sources = new Map<string, Source>();
  #addressOf = new Map<string, string>();
  #peerAddresses: readonly string[] = [];
  #everJoined = false;
  /** Members known before an outage, kept while the registers settle. */
  #carried: Map<string, string> | undefined;
  #settleTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #listeners = new Set<() => void>();

  /**
   * @param selfNodeId This service's node id; it is never a peer.
   * @param options How long to keep members through a register's return.
   */
  constructor(selfNodeId: string, options: MemberTableOptions) {
    this.#self = selfNodeId;
    this.#settleMs = options.settleMs;
  }

  /** Whether any register has pushed a member list yet. */
  get joined(): boolean {
    return this.#everJoined;
  }

  /** How many members the effective list has. */
  get size(): number {
    return this.#addressOf.size;
  }

  /** Records the list that one register pushed. */
  update(source: string, members: readonly Member[]): void {
    if (this.#everJoined && !this.#anyLive()) {
      // The first register back after an outage.
      this.#carried = new Map(this.#addressOf);
      clearTimeout(this.#settleTimer);
      this.#settleTimer = setTimeout(() => {
        this.#settleTimer = undefined;
        this.#carried = undefined;
        this.#recompute();
      }, this.#settleMs);
    }
    this.#sources.set(source, { members, live: true });
    this.#everJoined = true;
    this.#recompute();
  }

  /** Records that a register's stream broke; its last list is kept. */
  markDown(source: string): void {
    const entry = this.#sources.get(source);
    if (entry === undefined || !entry.live) return;
    entry.live = false;
    this.#recompute();
  }

  /** The RPC address of a member, or undefined for an unknown node. */
  addressOf(nodeId: string): string | undefined {
    return this.#addressOf.get(nodeId);
  }

  /** The RPC addresses of every member but this service, each once. */
  peerAddresses(): readonly string[] {
    return this.#peerAddresses;
  }

  /** The effective member list. */
  members(): Member[] {
    const members: Member[] = [];
    for (const [nodeId, rpcAddress] of this.#addressOf) {
      members.push({ nodeId, rpcAddress });
    }
    return members;
  }

  /** Calls `listener` after every change of the effective list. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stops the settle timer. */
  close(): void {
    clearTimeout(this.#settleTimer);
    this.#settleTimer = undefined;
    this.#listeners.clear();
  }

  #anyLive(): boolean {
    for (const source of this.#sources.values()) if (source.live) return true;
    return false;
  }

  #recompute(): void {
    const anyLive = this.#anyLive();
    // A service that restarted on the same address can briefly appear twice
    // (two registers at different moments). Both entries are kept: the new
    // process answers for the old node id as for an offline client.
    const next = new Map<string, string>();
    for (const source of this.#sources.values()) {
      if (anyLive && !source.live) continue;
      for (const m of source.members) next.set(m.nodeId, m.rpcAddress);
    }
    if (this.#carried !== undefined) {
      const taken = new Set(next.values());
      for (const [nodeId, address] of this.#carried) {
        // A carried member whose address a live member now has restarted.
        if (!next.has(nodeId) && !taken.has(address)) next.set(nodeId, address);
      }
    }
    if (sameEntries(next, this.#addressOf)) return;
    this.#addressOf = next;
    const peers = new Set(next.values());
    const selfAddress = next.get(this.#self);
    if (selfAddress !== undefined) peers.delete(selfAddress);
    this.#peerAddresses = [...peers];
    for (const listener of this.#listeners) listener();
  }
}

function sameEntries(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}
