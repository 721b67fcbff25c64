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

/** One delivery, in protobuf init form. */
export type DeliveryInit = MessageInitShape<typeof DeliverySchema>;

interface Batch {
  readonly done: Deferred<void>;
  readonly bytes: number;
}

/** The outgoing delivery stream to one peer. */
export class DeliveryLink {
  readonly #client: Client<typeof GatewayService>;
  readonly #address: string;
  readonly #maxQueuedBytes: number;
  #deliveries: DeliveryInit[] = [];
  #bytes = 0;
  #done: Deferred<void> | undefined;
  readonly #inflight: Batch[] = [];
  #queuedBytes = 0;
  #wake: (() => void) | undefined;
  #stream: AbortController | undefined;
  #closed = false;

  constructor(
    client: Client<typeof GatewayService>,
    address: string,
    maxQueuedBytes: number,
  ) {
    this.#client = client;
    this.#address = address;
    this.#maxQueuedBytes = maxQueuedBytes;
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
    const done = this.#done ??= deferred();
    if (this.#stream === undefined) this.#open();
    else this.#wakeUp();
    return done.promise;
  }

  /** Fails what is queued and closes the stream. */
  close(): void {
    this.#closed = true;
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
      this.#inflight.push({ done: this.#done!, bytes: this.#bytes });
      this.#deliveries = [];
      this.#bytes = 0;
      this.#done = undefined;
      yield { deliveries };
    }
  }

  #fail(error: GatewayError): void {
    const failed = this.#inflight.splice(0);
    if (this.#done !== undefined) {
      failed.push({ done: this.#done, bytes: this.#bytes });
      this.#deliveries = [];
      this.#bytes = 0;
      this.#done = undefined;
    }
    this.#queuedBytes = 0;
    for (const batch of failed) batch.done.reject(error);
  }
}
