// The sending end of holder routing: tells every peer when this service
// gains its first member of a uid or group and when it loses its last one
// (HOLD and RELEASE on the delivery links, batched with the other
// deliveries), and makes the snapshot that starts each connection of a
// link (HOLD_RESET, HOLDs, HOLD_SYNCED). holder_index.ts is the receiving
// end.
//
// Gains must never be missed, releases may be late: a call that caused a
// gain (binding a uid, joining a group) waits, through `settled`, until every peer
// that takes announcements applied it, within the peer deadline; a peer
// that could not be reached counts this service as holder of everything
// until its link is back and carried a new snapshot.

import { type Deferred, deferred } from "../base/deferred.ts";
import { DeliveryEncoder } from "../delivery/codec.ts";
import { HOLDING } from "../delivery/wire.ts";
import type { HoldingsObserver } from "../hub/local_hub.ts";
import type { HolderKind } from "./holder_index.ts";
import type { Members, Peers } from "./peers.ts";

/** Names per HOLD or RELEASE delivery, at most. */
const NAMES_PER_DELIVERY = 1024;

/** What this service holds now (LocalHub has this shape). */
export interface Holdings {
  hasUid(uid: string): boolean;
  groupSize(group: string): number;
  uids(): Iterable<string>;
  groups(): Iterable<string>;
}

/** Options of {@linkcode HolderAnnouncer}. */
export interface HolderAnnouncerOptions {
  readonly nodeId: string;
  /** How long a call that caused a gain waits for the peers, at most. */
  readonly deadlineMs: number;
}

/** What the announcer reads and writes, given once they exist. */
export interface AnnouncerParts {
  /** What this service holds (the hub that reports to the announcer). */
  readonly holdings: Holdings;
  readonly members: Members;
  readonly peers: Peers;
}

/**
 * Announces this service's holdings to its peers.
 *
 * @example Wired to a hub
 * ```ts ignore
 * const announcer = new HolderAnnouncer({ nodeId, deadlineMs: 2000 });
 * const hub = new LocalHub({ holdings: announcer });
 * announcer.attach({ holdings: hub, members, peers });
 * hub.bind(clientId, "alice");
 * await announcer.settled(); // every peer applied the HOLD
 * ```
 */
export class HolderAnnouncer implements HoldingsObserver {
  readonly #nodeId: string;
  readonly #deadlineMs: number;
  readonly #encoder = new DeliveryEncoder();
  #parts: AnnouncerParts | undefined;
  /** Names whose holding changed since the last flush. */
  readonly #touched = { uid: new Set<string>(), group: new Set<string>() };
  #gained = false;
  #waiting: Deferred<void> | undefined;
  #scheduled = false;
  #epoch = 0;

  constructor(options: HolderAnnouncerOptions) {
    this.#nodeId = options.nodeId;
    this.#deadlineMs = options.deadlineMs;
  }

  /** Gives the hub, the member list and the peers; nothing goes out before. */
  attach(parts: AnnouncerParts): void {
    this.#parts = parts;
  }

  held(kind: HolderKind, name: string): void {
    this.#touched[kind].add(name);
    this.#gained = true;
    this.#schedule();
  }

  released(kind: HolderKind, name: string): void {
    this.#touched[kind].add(name);
    this.#schedule();
  }

  /**
   * Resolves once the peers applied the gains made so far (or could not,
   * within the deadline); undefined when there are none to wait for.
   */
  settled(): Promise<void> | undefined {
    if (!this.#gained) return undefined;
    return (this.#waiting ??= deferred()).promise;
  }

  /** Opens the link to every peer, so that each gets the snapshot. */
  connectAll(): void {
    const parts = this.#parts;
    if (parts === undefined) return;
    for (const address of parts.members.peerAddresses()) {
      parts.peers.get(address).deliveries.connect?.();
    }
  }

  /**
   * A full snapshot of this service's holdings, as copies of deliveries:
   * HOLD_RESET with a new epoch, HOLDs, HOLD_SYNCED.
   */
  snapshot(): Uint8Array[] {
    const encoder = this.#encoder;
    const parts = [encoder.holdReset(this.#nodeId, ++this.#epoch).slice()];
    const holdings = this.#parts?.holdings;
    if (holdings !== undefined) {
      for (
        const [holding, names] of [
          [HOLDING.UID, holdings.uids()],
          [HOLDING.GROUP, holdings.groups()],
        ] as const
      ) {
        for (const chunk of chunks(names)) {
          parts.push(encoder.hold(holding, chunk).slice());
        }
      }
    }
    parts.push(encoder.holdSynced().slice());
    return parts;
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(this.#flush);
  }

  /**
   * Announces what changed in this tick: for each name touched, whether it
   * is held now (so a join and a leave in one tick cancel out).
   */
  readonly #flush = (): void => {
    this.#scheduled = false;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    this.#gained = false;
    const parts = this.#parts;
    if (parts === undefined) {
      this.#touched.uid.clear();
      this.#touched.group.clear();
      return waiting?.resolve();
    }
    const { holdings, members, peers } = parts;
    const links = members.peerAddresses().map((address) =>
      peers.get(address).deliveries
    );
    const pending: Promise<void>[] = [];
    for (const kind of ["uid", "group"] as const) {
      const touched = this.#touched[kind];
      if (touched.size === 0) continue;
      const held: string[] = [];
      const lost: string[] = [];
      for (const name of touched) {
        const isHeld = kind === "uid"
          ? holdings.hasUid(name)
          : holdings.groupSize(name) > 0;
        (isHeld ? held : lost).push(name);
      }
      touched.clear();
      const holding = kind === "uid" ? HOLDING.UID : HOLDING.GROUP;
      for (const chunk of chunks(held)) {
        const delivery = this.#encoder.hold(holding, chunk);
        for (const link of links) {
          const applied = link.announce?.(delivery);
          if (applied !== undefined) pending.push(applied);
        }
      }
      for (const chunk of chunks(lost)) {
        const delivery = this.#encoder.release(holding, chunk);
        for (const link of links) link.announce?.(delivery)?.catch(() => {});
      }
    }
    if (waiting === undefined) {
      for (const applied of pending) applied.catch(() => {});
      return;
    }
    if (pending.length === 0) return waiting.resolve();
    const timer = setTimeout(waiting.resolve, this.#deadlineMs);
    Promise.allSettled(pending).then(() => {
      clearTimeout(timer);
      waiting.resolve();
    });
  };
}

/** `names` in lists of at most NAMES_PER_DELIVERY. */
function* chunks(names: Iterable<string>): Generator<string[]> {
  let chunk: string[] = [];
  for (const name of names) {
    chunk.push(name);
    if (chunk.length === NAMES_PER_DELIVERY) {
      yield chunk;
      chunk = [];
    }
  }
  if (chunk.length > 0) yield chunk;
}
