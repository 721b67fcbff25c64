// Which service sent the delivery being applied right now. A session that
// moves between services (docs/recovery.md) sorts what reaches it by its
// sender: before or after that sender's fence. Deliveries are applied
// synchronously, so one field serves the whole process: a receiver sets it
// around each batch (a FENCE delivery in the batch names the sender), and
// it is undefined while this service's own sends are applied.

/** A peer whose node id the receiving connection has not learnt yet. */
export const UNKNOWN_ORIGIN = "";

/**
 * The sender of the delivery being applied: a peer's node id,
 * {@linkcode UNKNOWN_ORIGIN}, or undefined for this service's own sends.
 */
export const deliveryOrigin: { current: string | undefined } = {
  current: undefined,
};
