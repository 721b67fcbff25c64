// The receiving end of one peer's deliveries, whichever way they came (the
// gRPC Deliver stream, its Connect fallback, or the delivery port): each
// batch is checked, then applied, and acknowledged in order.
// Acknowledgements coalesce: one counts every batch applied since the
// previous one, and is written a microtask after the first of them, so
// that batches that arrive in one read are acknowledged once.
//
// A connection whose sender named it (link_id.ts) claims its sender with
// its first batch (newest_connections.ts): once a newer connection of the
// same sender has delivered, this one's batches are dropped, unapplied
// and unacknowledged, and the connection is ended.

import { GatewayError } from "../../errors.ts";
import {
  applyBatch,
  type DeliveryTarget,
  type HoldingsStream,
} from "./codec.ts";
import { deliveryOrigin, UNKNOWN_ORIGIN } from "./origin.ts";
import type { LinkId } from "./link_id.ts";
import type { Claimant, NewestConnections } from "./newest_connections.ts";

/**
 * What a receiving end does besides applying deliveries to the clients,
 * the same for every connection of a service.
 */
export interface ReceiverOptions {
  /**
   * Opens where the holder announcements of one connection go; unset, they
   * are skipped (and the Deliver endpoint does not offer them to peers).
   */
  readonly holdings?: (() => HoldingsStream) | undefined;
  /** Counts the deliveries of messages applied from peers. */
  readonly counts?: ReceivedCounts | undefined;
  /**
   * Each sender's newest connection, shared by every connection of the
   * service; unset, connections are not checked against each other.
   */
  readonly connections?: NewestConnections | undefined;
}

/** The connection that a receiver serves, as its sender named it. */
export interface ReceiverConnection {
  /** The sender and the connection's sequence number. */
  readonly link: LinkId;
  /**
   * Ends the connection with `error` (after the acknowledgement of what
   * was applied): a newer connection of the same sender took over.
   */
  end(error: GatewayError): void;
}

/** What a service applied from its peers. */
export interface ReceivedCounts {
  /** Deliveries of messages applied (one per message per receiving service). */
  deliveries: number;
}

/** Applies one sender's batches to the clients of this service. */
export class DeliveryReceiver {
  readonly #target: DeliveryTarget;
  readonly #acknowledge: (batches: number) => void;
  readonly #holdings: HoldingsStream | undefined;
  readonly #counts: ReceivedCounts | undefined;
  /** Set when the connection is checked against its sender's others. */
  readonly #claimant: (Claimant & ReceiverConnection) | undefined;
  readonly #connections: NewestConnections | undefined;
  #claimed = false;
  /** A newer connection of the sender took over: nothing is applied. */
  #stale = false;
  #applied = 0;
  #origin: string = UNKNOWN_ORIGIN;
  #scheduled = false;
  #closed = false;

  /**
   * @param target Where batches are applied: this service's clients.
   * @param acknowledge Writes one acknowledgement of `batches` batches.
   * @param options Where holder announcements go, what is counted, and
   * each sender's newest connection.
   * @param connection The connection, when its sender named it: then it
   * is checked against the sender's others (with `options.connections`).
   */
  constructor(
    target: DeliveryTarget,
    acknowledge: (batches: number) => void,
    options: ReceiverOptions = {},
    connection?: ReceiverConnection,
  ) {
    this.#target = target;
    this.#acknowledge = acknowledge;
    this.#holdings = options.holdings?.();
    this.#counts = options.counts;
    this.#connections = options.connections;
    if (connection !== undefined && options.connections !== undefined) {
      this.#claimant = {
        link: connection.link,
        end: (error) => connection.end(error),
        supersede: () => this.#supersede(),
      };
    }
  }

  /**
   * Checks a batch of packed deliveries as a whole and applies it; its
   * acknowledgement follows.
   *
   * @throws {GatewayError} `invalid_argument` when the batch is malformed;
   * nothing of it was applied, and the connection should end.
   */
  receive(packed: Uint8Array): void {
    if (this.#closed || this.#stale) return;
    const claimant = this.#claimant;
    if (claimant !== undefined && !this.#claimed) {
      this.#claimed = true;
      const claim = this.#connections!.claim(claimant);
      if (!claim.newest) return this.#supersede();
      // The older connection ends after this batch is applied.
      try {
        this.#apply(packed);
      } finally {
        claim.previous?.supersede();
      }
      return;
    }
    this.#apply(packed);
  }

  #apply(packed: Uint8Array): void {
    // The sender, as far as this connection knows it: a FENCE or
    // HOLD_RESET delivery in the batch names it (origin.ts).
    deliveryOrigin.current = this.#origin;
    try {
      const applied = applyBatch(this.#target, packed, this.#holdings);
      if (this.#counts !== undefined) this.#counts.deliveries += applied;
    } finally {
      this.#origin = deliveryOrigin.current ?? UNKNOWN_ORIGIN;
      deliveryOrigin.current = undefined;
    }
    this.#applied++;
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(this.#onTick);
    }
  }

  /** Acknowledges at once what was applied and not acknowledged yet. */
  flush(): void {
    this.#scheduled = false;
    const batches = this.#applied;
    if (batches === 0 || this.#closed) return;
    this.#applied = 0;
    this.#acknowledge(batches);
  }

  /** Stops acknowledging: the connection is gone or ends. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#holdings?.end();
    if (this.#claimant !== undefined) {
      this.#connections!.release(this.#claimant);
    }
  }

  /** A newer connection of the sender delivers: drops and ends this one. */
  #supersede(): void {
    if (this.#stale || this.#closed) return;
    this.#stale = true;
    const { sender, seq } = this.#claimant!.link;
    this.#claimant!.end(
      new GatewayError(
        "unavailable",
        `delivery connection ${seq} of sender ${sender} was replaced by a newer connection of the same sender; what it still carries is dropped`,
      ),
    );
  }

  readonly #onTick = (): void => this.flush();
}
