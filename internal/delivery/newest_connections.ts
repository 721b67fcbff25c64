// The receiving service's record of each sender's newest delivery
// connection (link_id.ts), so that one sender's batches are applied from
// one connection at a time, and never from an older one after a newer one.
//
// Why: a sender moves to a new connection only when it is done with the
// old one. It moves to its peer's delivery port once everything on the
// gRPC stream was acknowledged, and it reconnects after the old connection
// failed (its unacknowledged batches then failed too; nothing is sent
// again). But the receiver may not have seen the old connection end: when
// a link was cut, the sender's kernel still retransmits what it had
// written to it once the link is back, seconds later, after the batches
// of the new connection. So a connection claims its sender when its first
// batch arrives: a newer connection than the sender's current one takes
// over (the older one is ended, and what it still delivers is dropped); an
// older one is dropped and ended at once. Claiming at the first batch, not
// at the hello, lets the gRPC stream finish while the delivery port
// connection is being opened.
//
// The guarantee, per sending service and receiving service: batches are
// applied in the order the sender wrote them, each at most once. A batch
// that the sender reported failed may still be applied, if it arrives
// before anything of the newer connection; never after.

import type { LinkId } from "./link_id.ts";

/** A connection that may claim its sender: a DeliveryReceiver. */
export interface Claimant {
  /** Its sender and sequence number. */
  readonly link: LinkId;
  /** A newer connection of its sender took over: drop and end. */
  supersede(): void;
}

/** What {@linkcode NewestConnections.claim} decided. */
export interface Claim {
  /** The claimant is its sender's newest connection: apply its batches. */
  readonly newest: boolean;
  /** The sender's open connection that the claimant takes over from. */
  readonly previous?: Claimant | undefined;
}

const REFUSED: Claim = { newest: false };

interface SenderState {
  /** The highest sequence number that claimed the sender. */
  seq: number;
  /** The connection of `seq`, while it is open. */
  current: Claimant | undefined;
}

/**
 * Senders without an open connection, at most, whose newest sequence
 * number is remembered; the oldest is forgotten first.
 */
const MAX_IDLE_SENDERS = 4096;

/**
 * The newest connection of each sender to this service.
 *
 * @example
 * ```ts
 * const connections = new NewestConnections();
 * const older = { link: { sender: "s", seq: 1 }, supersede() {} };
 * const newer = { link: { sender: "s", seq: 2 }, supersede() {} };
 * connections.claim(newer); // { newest: true, previous: undefined }
 * connections.claim(older); // { newest: false }: drop it, and end it
 * ```
 */
export class NewestConnections {
  readonly #senders = new Map<string, SenderState>();
  #idle = 0;

  /**
   * `claimant` delivers its first batch: false when the sender has a newer
   * or the same connection already; else it is the sender's newest, and
   * the claim names the open connection it takes over from, which the
   * caller supersedes once it has applied the batch (so that an older
   * connection's end comes after the newer one's first batch: the holder
   * index then sees the new HOLD_RESET first).
   */
  claim(claimant: Claimant): Claim {
    const { sender, seq } = claimant.link;
    const state = this.#senders.get(sender);
    if (state !== undefined && seq <= state.seq) return REFUSED;
    const previous = state?.current;
    if (state !== undefined && previous === undefined) this.#idle--;
    // Re-inserted: the map's order is the order of last use.
    this.#senders.delete(sender);
    this.#senders.set(sender, { seq, current: claimant });
    return { newest: true, previous };
  }

  /** `claimant`'s connection ended; its sender's sequence is remembered. */
  release(claimant: Claimant): void {
    const state = this.#senders.get(claimant.link.sender);
    if (state === undefined || state.current !== claimant) return;
    state.current = undefined;
    if (++this.#idle <= MAX_IDLE_SENDERS) return;
    for (const [sender, s] of this.#senders) {
      if (s.current !== undefined) continue;
      this.#senders.delete(sender);
      this.#idle--;
      break;
    }
  }

  /** Senders remembered (with or without an open connection). */
  get size(): number {
    return this.#senders.size;
  }
}
