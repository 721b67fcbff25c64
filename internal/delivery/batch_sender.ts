// The sending end of one peer's deliveries, as DeliveryLink sees it,
// whichever transport carries the batches.

import type { GatewayError } from "../../errors.ts";

/** The ways batches travel, as /metrics names them. */
export type Transport = "grpc" | "delivery_port";

/**
 * One connection that carries batches to a peer, opened when it is made.
 * Batches are written in order, and the peer applies and acknowledges them
 * in order.
 */
export interface BatchSender {
  /** Which way the batches go. */
  readonly via: Transport;
  /**
   * Writes one batch: `buffer` holds it from `BATCH_HEADROOM` (wire.ts)
   * on, `bytes` long. The headroom is overwritten with the transport's
   * framing, and the batch is copied out before this returns.
   */
  write(buffer: Uint8Array, bytes: number): void;
  /** Ends the connection at once; `onEnded` reports `reason`. */
  abort(reason: GatewayError): void;
  /**
   * Ends the connection once the peer has answered what was written;
   * nothing is reported any more.
   */
  finish(): void;
}

/** What a {@linkcode BatchSender} reports. */
export interface BatchSenderEvents {
  /** The peer accepted the connection: batches may go this way. */
  onReady(): void;
  /** The peer applied `batches` more batches, in the order written. */
  onAcknowledged(batches: number): void;
  /** The connection ended; batches not acknowledged by then are lost. */
  onEnded(error: GatewayError): void;
  /** The peer named its delivery port (on the gRPC stream only). */
  onDeliveryPort(port: number): void;
  /**
   * The peer applies holder announcements (on the gRPC stream only,
   * just before onReady).
   */
  onHoldings?(): void;
}
