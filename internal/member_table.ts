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

/**
 * Merges the member lists of several registers. The effective list is the
 * union of the lists of the registers that are connected now; while none is
 * connected it is the union of the last lists each one pushed, so the
 * cluster keeps working through a register outage.
 */
export class MemberTable {
  readonly #self: string;
  readonly #sources = new Map<string, Source>();
  #addressOf = new Map<string, string>();
  #peerAddresses: readonly string[] = [];
  #everJoined = false;
  readonly #listeners = new Set<() => void>();

  /** @param selfNodeId This service's node id; it is never a peer. */
  constructor(selfNodeId: string) {
    this.#self = selfNodeId;
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

  #recompute(): void {
    let anyLive = false;
    for (const source of this.#sources.values()) anyLive ||= source.live;
    // A service that restarted on the same address can briefly appear twice
    // (two registers at different moments). Both entries are kept: the new
    // process answers for the old node id as for an offline client.
    const next = new Map<string, string>();
    for (const source of this.#sources.values()) {
      if (anyLive && !source.live) continue;
      for (const m of source.members) next.set(m.nodeId, m.rpcAddress);
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
