// DeliveryLink over senders in memory: what is queued in one tick is one
// batch, at most MAX_UNACKNOWLEDGED_BATCHES wait for acknowledgement, the
// queue and the deadline are bounded, a sender that ends fails what it
// carried, and the move to the delivery port keeps order.

import assert from "node:assert/strict";
import { GatewayError } from "../../mod.ts";
import type {
  BatchSender,
  BatchSenderEvents,
  Transport,
} from "../../internal/delivery/batch_sender.ts";
import {
  type DeliveryCounts,
  DeliveryLink,
  type DeliveryLinkOptions,
  MAX_UNACKNOWLEDGED_BATCHES,
} from "../../internal/delivery/delivery_link.ts";
import { BATCH_HEADROOM } from "../../internal/delivery/wire.ts";

/** A sender that records its batches; the test acknowledges them. */
class MemorySender implements BatchSender {
  readonly batches: number[][] = [];
  ended: GatewayError | undefined;
  finished = false;
  constructor(readonly via: Transport, readonly events: BatchSenderEvents) {}
  write(buffer: Uint8Array, bytes: number): void {
    this.batches.push([
      ...buffer.subarray(BATCH_HEADROOM, BATCH_HEADROOM + bytes),
    ]);
  }
  abort(reason: GatewayError): void {
    this.ended ??= reason;
    this.events.onEnded(reason);
  }
  finish(): void {
    this.finished = true;
  }
}

function link(options: Partial<DeliveryLinkOptions> = {}) {
  const senders: MemorySender[] = [];
  const ports: MemorySender[] = [];
  const counts: DeliveryCounts = {
    deliveries: 0,
    grpcBatches: 0,
    portBatches: 0,
  };
  const deliveries = new DeliveryLink(
    {
      open(events) {
        const sender = new MemorySender("grpc", events);
        senders.push(sender);
        return sender;
      },
      openPort(_port, events) {
        const sender = new MemorySender("delivery_port", events);
        ports.push(sender);
        return sender;
      },
    },
    "10.0.0.7:9101",
    {
      maxQueuedBytes: 1024,
      deadlineMs: 60_000,
      counts,
      ...options,
    },
  );
  return { deliveries, senders, ports, counts };
}

function tick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Whether `promise` settled by the next tick, and how. */
async function state(promise: Promise<unknown>): Promise<string> {
  let result = "pending";
  promise.then(() => result = "resolved", () => result = "rejected");
  await tick();
  return result;
}

Deno.test("DeliveryLink sends what one tick queued as one batch, resolved by its acknowledgement", async () => {
  const { deliveries, senders, counts } = link();
  const first = deliveries.send(Uint8Array.of(1));
  const second = deliveries.send(Uint8Array.of(2, 2));
  assert.equal(first, second, "one batch, one promise");
  await tick();
  assert.equal(senders.length, 1);
  assert.deepEqual(senders[0]!.batches, [[1, 2, 2]]);
  assert.equal(await state(first), "pending");
  senders[0]!.events.onAcknowledged(1);
  assert.equal(await state(first), "resolved");
  assert.deepEqual(counts, { deliveries: 2, grpcBatches: 1, portBatches: 0 });
  await deliveries.drained();
});

Deno.test("DeliveryLink keeps at most MAX_UNACKNOWLEDGED_BATCHES in flight, then sends one bigger batch", async () => {
  const { deliveries, senders } = link();
  const sent: Promise<void>[] = [];
  for (let i = 0; i < MAX_UNACKNOWLEDGED_BATCHES + 3; i++) {
    sent.push(deliveries.send(Uint8Array.of(i)));
    await tick();
  }
  const sender = senders[0]!;
  assert.equal(sender.batches.length, MAX_UNACKNOWLEDGED_BATCHES);
  sender.events.onAcknowledged(1);
  await tick();
  // The three that waited go out together, after the ones in flight.
  assert.deepEqual(sender.batches.at(-1), [8, 9, 10]);
  assert.deepEqual(sender.batches.flat(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  sender.events.onAcknowledged(MAX_UNACKNOWLEDGED_BATCHES);
  await Promise.all(sent);
});

Deno.test("DeliveryLink refuses a delivery at once when too much waits", async () => {
  const { deliveries, senders } = link({ maxQueuedBytes: 10 });
  const first = deliveries.send(new Uint8Array(8));
  await assert.rejects(
    deliveries.send(new Uint8Array(8)),
    (error) => error instanceof GatewayError && error.code === "unavailable",
  );
  await tick();
  senders[0]!.events.onAcknowledged(1);
  await first;
  // Once acknowledged, there is room again.
  const again = deliveries.send(new Uint8Array(8));
  await tick();
  senders[0]!.events.onAcknowledged(1);
  await again;
});

Deno.test("DeliveryLink fails what the peer does not acknowledge within the deadline", async () => {
  const { deliveries, senders } = link({ deadlineMs: 30 });
  const late = deliveries.send(Uint8Array.of(1));
  await assert.rejects(
    late,
    (error) =>
      error instanceof GatewayError && error.code === "deadline_exceeded",
  );
  assert.equal(
    senders[0]!.ended?.code,
    "deadline_exceeded",
    "the sender is dropped",
  );
});

Deno.test("DeliveryLink fails what a sender carried when it ends, and opens a new one", async () => {
  const { deliveries, senders } = link();
  const lost = deliveries.send(Uint8Array.of(1));
  await tick();
  senders[0]!.events.onEnded(
    new GatewayError("unavailable", "10.0.0.7:9101: gone"),
  );
  await assert.rejects(lost, /gone/);
  const next = deliveries.send(Uint8Array.of(2));
  await tick();
  assert.equal(senders.length, 2);
  assert.deepEqual(senders[1]!.batches, [[2]]);
  senders[1]!.events.onAcknowledged(1);
  await next;
});

Deno.test("DeliveryLink moves to the delivery port only when nothing is in flight", async () => {
  const { deliveries, senders, ports, counts } = link();
  const a = deliveries.send(Uint8Array.of(1));
  await tick();
  const grpc = senders[0]!;
  grpc.events.onDeliveryPort(9102);
  assert.equal(ports.length, 1);
  const port = ports[0]!;
  port.events.onReady();
  // Batch 1 is still in flight on gRPC: new deliveries wait.
  const b = deliveries.send(Uint8Array.of(2));
  await tick();
  assert.deepEqual(port.batches, []);
  assert.deepEqual(grpc.batches, [[1]]);
  grpc.events.onAcknowledged(1);
  await a;
  await tick();
  assert.equal(grpc.finished, true, "the gRPC stream is ended");
  assert.deepEqual(port.batches, [[2]]);
  // Late acknowledgements from the old stream count for nothing.
  grpc.events.onAcknowledged(1);
  assert.equal(await state(b), "pending");
  port.events.onAcknowledged(1);
  await b;
  assert.deepEqual(counts, { deliveries: 2, grpcBatches: 1, portBatches: 1 });
});

Deno.test("DeliveryLink stays on gRPC when the delivery port fails", async () => {
  const { deliveries, senders, ports } = link();
  const a = deliveries.send(Uint8Array.of(1));
  await tick();
  senders[0]!.events.onDeliveryPort(9102);
  ports[0]!.events.onEnded(new GatewayError("unavailable", "refused"));
  senders[0]!.events.onAcknowledged(1);
  await a;
  const b = deliveries.send(Uint8Array.of(2));
  await tick();
  assert.deepEqual(senders[0]!.batches, [[1], [2]]);
  senders[0]!.events.onAcknowledged(1);
  await b;
});

Deno.test("DeliveryLink uses its connections in the order it opened them: a port connection goes with the call that named it", async () => {
  const { deliveries, senders, ports } = link();
  const a = deliveries.send(Uint8Array.of(1));
  await tick();
  senders[0]!.events.onDeliveryPort(9102);
  assert.equal(ports.length, 1);
  // The call ends before the port connection is ready.
  senders[0]!.events.onEnded(new GatewayError("unavailable", "gone"));
  await assert.rejects(a, /gone/);
  assert.ok(ports[0]!.ended, "the port connection of the call ends too");
  ports[0]!.events.onReady();
  const b = deliveries.send(Uint8Array.of(2));
  await tick();
  // The next call, opened after that port connection, carries batch 2.
  assert.equal(senders.length, 2);
  assert.deepEqual(senders[1]!.batches, [[2]]);
  assert.deepEqual(ports[0]!.batches, []);
  senders[1]!.events.onDeliveryPort(9102);
  assert.equal(ports.length, 2, "it names the port again");
  senders[1]!.events.onAcknowledged(1);
  await b;
  ports[1]!.events.onReady();
  const c = deliveries.send(Uint8Array.of(3));
  await tick();
  assert.deepEqual(ports[1]!.batches, [[3]]);
  ports[1]!.events.onAcknowledged(1);
  await c;
});

Deno.test("DeliveryLink.close() fails what waits: closed, or unavailable when the peer left", async () => {
  for (const left of [false, true]) {
    const { deliveries } = link();
    const pending = deliveries.send(Uint8Array.of(1));
    deliveries.close(left);
    await assert.rejects(
      pending,
      (error) =>
        error instanceof GatewayError &&
        error.code === (left ? "unavailable" : "closed"),
    );
    await assert.rejects(
      deliveries.send(Uint8Array.of(2)),
      (error) => error instanceof GatewayError && error.code === "closed",
    );
    await deliveries.drained();
  }
});
