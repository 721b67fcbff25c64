// Batched, ordered delivery to one peer service over one long-lived
// Deliver stream. Everything queued while the previous batch is being
// written goes out as the next batch; the peer applies batches in order and
// acknowledges them in order.

import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import type {
  DeliverySchema,
  GatewayService,
} from "../proto/gen/websocket/v1/gateway_pb.ts";
import { GatewayError } from "../errors.ts";
import { type Deferred, deferred } from "./deferred.ts";
import { fromRpcError } from "./rpc_errors.ts";
import type { Histogram } from "./prometheus.ts";

/** One delivery, in protobuf init form. */
export type DeliveryInit = MessageInitShape<typeof DeliverySchema>;

interface Batch {
  readonly done: Deferred<void>;
  readonly bytes: number;
  /** When its first delivery was queued (Date.now()). */
  readonly since: number;
}

/** Options of {@linkcode DeliveryLink}. */
export interface DeliveryLinkOptions {
  /** Bytes that may wait for the peer before sends fail at once. */
  readonly maxQueuedBytes: number;
  /**
   * A batch not acknowledged this long after its first delivery was queued
   * fails with `deadline_exceeded`, and the stream is dropped.
   */
  readonly deadlineMs: number;
  /** Observes each batch's latency, first queued to acknowledged, in s. */
  readonly deliveryLatency?: Histogram | undefined;
}

/** The outgoing delivery stream to one peer. */
export class DeliveryLink {
  readonly #client: Client<typeof GatewayService>;
  readonly #address: string;
  readonly #maxQueuedBytes: number;
  readonly #deadlineMs: number;
  readonly #latency: Histogram | undefined;
  #deliveries: DeliveryInit[] = [];
  #bytes = 0;
  #done: Deferred<void> | undefined;
  #since = 0;
  #watchdog: ReturnType<typeof setTimeout> | undefined;
  readonly #inflight: Batch[] = [];
  #queuedBytes = 0;
  #wake: (() => void) | undefined;
  #stream: AbortController | undefined;
  #closed = false;

  constructor(
    client: Client<typeof GatewayService>,
    address: string,
    options: DeliveryLinkOptions,
  ) {
    this.#client = client;
    this.#address = address;
    this.#maxQueuedBytes = options.maxQueuedBytes;
    this.#deadlineMs = options.deadlineMs;
    this.#latency = options.deliveryLatency;
  }

  /**
   * Queues a delivery. Resolves when the peer has applied it; rejects when
   * the stream broke first, or at once when `maxQueuedBytes` are already
   * waiting for this peer.
   */
  send(delivery: DeliveryInit, bytes: number): Promise<void> {
    if (this.#closed) {
      return Promise.reject(
        new GatewayError(
          "closed",
          `Cannot send to service ${this.#address}: the service is closing`,
        ),
      );
    }
    if (
      this.#queuedBytes > 0 &&
      this.#queuedBytes + bytes > this.#maxQueuedBytes
    ) {
      return Promise.reject(
        new GatewayError(
          "unavailable",
          `Cannot send to service ${this.#address}: ${this.#queuedBytes} bytes already wait for it (limit ${this.#maxQueuedBytes})`,
        ),
      );
    }
    this.#deliveries.push(delivery);
    this.#bytes += bytes;
    this.#queuedBytes += bytes;
    let done = this.#done;
    if (done === undefined) {
      done = this.#done = deferred();
      this.#since = Date.now();
      this.#armWatchdog();
    }
    if (this.#stream === undefined) this.#open();
    else this.#wakeUp();
    return done.promise;
  }

  /** Resolves when everything queued so far was acknowledged or failed. */
  drained(): Promise<void> {
    const pending = this.#inflight.map((batch) => batch.done.promise);
    if (this.#done !== undefined) pending.push(this.#done.promise);
    return Promise.allSettled(pending).then(() => {});
  }

  /**
   * Fails what is queued and closes the stream: because this service is
   * closing, or (`left`) because the peer left the cluster.
   */
  close(left = false): void {
    this.#closed = true;
    this.#fail(
      left
        ? new GatewayError(
          "unavailable",
          `Cannot send to service ${this.#address}: it left the cluster`,
        )
        : new GatewayError(
          "closed",
          `Cannot send to service ${this.#address}: this service is closing`,
        ),
    );
    this.#stream?.abort();
  }

  /** When the oldest unacknowledged delivery was queued, if any. */
  #oldest(): number | undefined {
    return this.#inflight[0]?.since ??
      (this.#done === undefined ? undefined : this.#since);
  }

  /** Wakes up when the oldest unacknowledged delivery is due. */
  #armWatchdog(): void {
    if (this.#watchdog !== undefined) return;
    const oldest = this.#oldest();
    if (oldest === undefined) return;
    this.#watchdog = setTimeout(() => {
      this.#watchdog = undefined;
      this.#checkDeadline();
    }, Math.max(0, oldest + this.#deadlineMs - Date.now()));
  }

  /** Fails everything and drops the stream when the oldest batch is late. */
  #checkDeadline(): void {
    const oldest = this.#oldest();
    if (oldest === undefined) return;
    if (Date.now() - oldest < this.#deadlineMs) {
      this.#armWatchdog();
      return;
    }
    this.#fail(
      new GatewayError(
        "deadline_exceeded",
        `Cannot send to service ${this.#address}: no acknowledgement within ${this.#deadlineMs} ms`,
      ),
    );
    this.#stream?.abort();
  }

  #wakeUp(): void {
    const wake = this.#wake;
    if (wake !== undefined) {
      this.#wake = undefined;
      wake();
    }
  }

  #open(): void {
    const controller = new AbortController();
    this.#stream = controller;
    const responses = this.#client.deliver(this.#requests(controller.signal), {
      signal: controller.signal,
    });
    (async () => {
      try {
        for await (const response of responses) {
          for (let n = response.batches; n > 0; n--) {
            const batch = this.#inflight.shift();
            if (batch === undefined) break;
            this.#queuedBytes -= batch.bytes;
            this.#latency?.observe((Date.now() - batch.since) / 1000);
            batch.done.resolve();
          }
        }
        throw new GatewayError("unavailable", "the delivery stream ended");
      } catch (error) {
        this.#fail(fromRpcError(error, this.#address));
      } finally {
        controller.abort();
        this.#stream = undefined;
        this.#wakeUp();
      }
    })();
  }

  async *#requests(signal: AbortSignal) {
    while (!signal.aborted) {
      if (this.#deliveries.length === 0) {
        await new Promise<void>((resolve) => this.#wake = resolve);
        continue;
      }
      const deliveries = this.#deliveries;
      this.#inflight.push({
        done: this.#done!,
        bytes: this.#bytes,
        since: this.#since,
      });
      this.#deliveries = [];
      this.#bytes = 0;
      this.#done = undefined;
      yield { deliveries };
    }
  }

  #fail(error: GatewayError): void {
    const failed = this.#inflight.splice(0);
    if (this.#done !== undefined) {
      failed.push({ done: this.#done, bytes: this.#bytes, since: this.#since });
      this.#deliveries = [];
      this.#bytes = 0;
      this.#done = undefined;
    }
    this.#queuedBytes = 0;
    clearTimeout(this.#watchdog);
    this.#watchdog = undefined;
    for (const batch of failed) batch.done.reject(error);
  }
}
