// The register side of membership: who is in the cluster, and a Join
// stream per member that carries the full list after every change.

import { createNodeId } from "../hub/client_id.ts";
import type { Member } from "../membership/member_table.ts";
import type { Logger } from "../base/logger.ts";

/** What a Join stream yields. */
export type JoinEvent =
  | { readonly kind: "members"; readonly list: MemberList }
  | { readonly kind: "heartbeat" };

/** A register's member list at one moment. */
export interface MemberList {
  readonly registerId: string;
  readonly version: bigint;
  readonly members: readonly Member[];
}

interface Entry {
  readonly member: Member;
  dirty: boolean;
  evicted: boolean;
  wake: (() => void) | undefined;
}

/** The members of the cluster, as one register sees them. */
export class MemberRegistry {
  readonly #id = createNodeId();
  readonly #entries = new Map<string, Entry>();
  readonly #heartbeatMs: number;
  readonly #logger: Logger;
  readonly #onLeave: ((member: Member) => void) | undefined;
  #version = 0n;
  #list: MemberList | undefined;
  #closed = false;

  /**
   * @param options How often idle streams carry a heartbeat, where to log,
   * and what to call when a member leaves or is replaced.
   */
  constructor(options: {
    heartbeatMs: number;
    logger: Logger;
    onLeave?: ((member: Member) => void) | undefined;
  }) {
    this.#heartbeatMs = options.heartbeatMs;
    this.#logger = options.logger;
    this.#onLeave = options.onLeave;
  }

  /** The id of this register process, as its lists carry it. */
  get id(): string {
    return this.#id;
  }

  /** How many members there are. */
  get size(): number {
    return this.#entries.size;
  }

  /** Whether the member `nodeId` is joined now. */
  has(nodeId: string): boolean {
    return this.#entries.has(nodeId);
  }

  /** The current list. */
  list(): MemberList {
    return this.#list ??= {
      registerId: this.#id,
      version: this.#version,
      members: [...this.#entries.values()].map((e) => e.member),
    };
  }

  /**
   * Adds a member for as long as the returned stream is consumed and
   * `signal` is not aborted. A member with the same node id or RPC address
   * replaces the older one, whose stream ends.
   */
  async *join(member: Member, signal: AbortSignal): AsyncGenerator<JoinEvent> {
    if (this.#closed) return;
    for (const entry of this.#entries.values()) {
      if (
        entry.member.nodeId === member.nodeId ||
        entry.member.rpcAddress === member.rpcAddress
      ) {
        this.#evict(entry);
      }
    }
    const entry: Entry = {
      member,
      dirty: true,
      evicted: false,
      wake: undefined,
    };
    this.#entries.set(member.nodeId, entry);
    this.#logger.info("member joined", { ...member, members: this.size });
    this.#changed();
    try {
      while (!signal.aborted && !entry.evicted && !this.#closed) {
        if (entry.dirty) {
          entry.dirty = false;
          yield { kind: "members", list: this.list() };
        } else if (!await this.#sleep(entry, signal)) {
          yield { kind: "heartbeat" };
        }
      }
    } finally {
      if (this.#entries.get(member.nodeId) === entry) {
        this.#entries.delete(member.nodeId);
        this.#logger.info("member left", { ...member, members: this.size });
        this.#onLeave?.(member);
        this.#changed();
      }
    }
  }

  /** Ends every Join stream. */
  close(): void {
    this.#closed = true;
    for (const entry of this.#entries.values()) entry.wake?.();
  }

  #evict(entry: Entry): void {
    entry.evicted = true;
    this.#entries.delete(entry.member.nodeId);
    this.#logger.info("member replaced", { ...entry.member });
    this.#onLeave?.(entry.member);
    entry.wake?.();
  }

  #changed(): void {
    this.#version++;
    this.#list = undefined;
    for (const entry of this.#entries.values()) {
      entry.dirty = true;
      entry.wake?.();
    }
  }

  /** Waits for a change (true) or the heartbeat interval (false). */
  #sleep(entry: Entry, signal: AbortSignal): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const done = (woken: boolean) => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        entry.wake = undefined;
        resolve(woken);
      };
      const onAbort = () => done(true);
      const timer = setTimeout(() => done(false), this.#heartbeatMs);
      signal.addEventListener("abort", onAbort, { once: true });
      entry.wake = () => done(true);
    });
  }
}
