// The receiving end of one peer's deliveries, whichever way they came (the
// gRPC Deliver stream, its Connect fallback, or the delivery port): each
// batch is checked, then applied, and acknowledged in order.
// Acknowledgements coalesce: one counts every batch applied since the
// previous one, and is written a microtask after the first of them, so
// that batches that arrive in one read are acknowledged once.

import {
  applyBatch,
  type DeliveryTarget,
  type HoldingsStream,
} from "./codec.ts";

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
  #applied = 0;
  #scheduled = false;
  #closed = false;

  /**
   * @param target Where batches are applied: this service's clients.
   * @param acknowledge Writes one acknowledgement of `batches` batches.
   * @param options Where holder announcements go, and what is counted.
   */
  constructor(
    target: DeliveryTarget,
    acknowledge: (batches: number) => void,
    options: ReceiverOptions = {},
  ) {
    this.#target = target;
    this.#acknowledge = acknowledge;
    this.#holdings = options.holdings?.();
    this.#counts = options.counts;
  }

  /**
   * Checks a batch of packed deliveries as a whole and applies it; its
   * acknowledgement follows.
   *
   * @throws {GatewayError} `invalid_argument` when the batch is malformed;
   * nothing of it was applied, and the connection should end.
   */
  receive(packed: Uint8Array): void {
    if (this.#closed) return;
    const applied = applyBatch(this.#target, packed, this.#holdings);
    if (this.#counts !== undefined) this.#counts.deliveries += applied;
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
  }

  readonly #onTick = (): void => this.flush();
}
