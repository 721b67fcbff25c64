// The receiving end of one peer's deliveries, whichever way they came (the
// gRPC Deliver stream, its Connect fallback, or the delivery port): each
// batch is checked, then applied, and acknowledged in order.
// Acknowledgements coalesce: one counts every batch applied since the
// previous one, and is written a microtask after the first of them, so
// that batches that arrive in one read are acknowledged once.

import { applyBatch, type DeliveryTarget } from "./codec.ts";
import { deliveryOrigin, UNKNOWN_ORIGIN } from "./origin.ts";

/** Applies one sender's batches to the clients of this service. */
export class DeliveryReceiver {
  readonly #target: DeliveryTarget;
  readonly #acknowledge: (batches: number) => void;
  #applied = 0;
  #origin: string = UNKNOWN_ORIGIN;
  #scheduled = false;
  #closed = false;

  /**
   * @param target Where batches are applied: this service's clients.
   * @param acknowledge Writes one acknowledgement of `batches` batches.
   */
  constructor(
    target: DeliveryTarget,
    acknowledge: (batches: number) => void,
  ) {
    this.#target = target;
    this.#acknowledge = acknowledge;
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
    // The sender, as far as this connection knows it: a FENCE delivery in
    // the batch names it (origin.ts).
    deliveryOrigin.current = this.#origin;
    try {
      applyBatch(this.#target, packed);
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
    this.#closed = true;
  }

  readonly #onTick = (): void => this.flush();
}
