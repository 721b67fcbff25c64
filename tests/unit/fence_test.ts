// The FENCE delivery of a session takeover (docs/recovery.md) in memory:
// its encoding, what a receiver learns from it about who sends, and a
// link that names its sender again on every new connection once it
// carried a fence.

import assert from "node:assert/strict";
import type { Message } from "../../mod.ts";
import { GatewayError } from "../../mod.ts";
import {
  applyBatch,
  DeliveryEncoder,
  type DeliveryTarget,
} from "../../internal/delivery/codec.ts";
import { DeliveryLink } from "../../internal/delivery/delivery_link.ts";
import type {
  BatchSender,
  BatchSenderEvents,
} from "../../internal/delivery/batch_sender.ts";
import {
  deliveryOrigin,
  UNKNOWN_ORIGIN,
} from "../../internal/delivery/origin.ts";
import { DeliveryReceiver } from "../../internal/delivery/receiver.ts";
import { BATCH_HEADROOM } from "../../internal/delivery/wire.ts";

/** Records each delivery with the origin it was applied under. */
function recordingTarget(log: string[]): DeliveryTarget {
  const seen = (what: string) =>
    log.push(`${what} from ${deliveryOrigin.current ?? "local"}`);
  return {
    toAll: (message: Message) => seen(`all ${message}`),
    toClient: (clientId, message) => seen(`client ${clientId} ${message}`),
    toUids: (uids, message) => seen(`uids ${uids} ${message}`),
    toGroups: (groups, message) => seen(`groups ${groups} ${message}`),
    close: (clientId) => seen(`close ${clientId}`),
    fence: (origin, clientId, newClientId) =>
      log.push(`fence ${origin} ${clientId} -> ${newClientId}`),
  };
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

const A = "aaaaaaaaaaaa.1";
const B = "bbbbbbbbbbbb.1";

Deno.test("a FENCE names its sender for what follows on the connection", () => {
  const encoder = new DeliveryEncoder();
  const log: string[] = [];
  const acks: number[] = [];
  const receiver = new DeliveryReceiver(
    recordingTarget(log),
    (n) => acks.push(n),
  );
  receiver.receive(concat(
    encoder.toUids(["u"], "before").slice(),
    encoder.fence("cccccccccccc", A, B).slice(),
    encoder.toGroups(["g"], "after", []).slice(),
  ));
  receiver.receive(encoder.toClient(B, "next batch").slice());
  assert.deepEqual(log, [
    `uids u before from ${UNKNOWN_ORIGIN}`,
    `fence cccccccccccc ${A} -> ${B}`,
    "groups g after from cccccccccccc",
    `client ${B} next batch from cccccccccccc`,
  ]);
  assert.equal(deliveryOrigin.current, undefined, "local sends again");
  receiver.close();
});

Deno.test("a FENCE that names the sender only reaches no takeover", () => {
  const encoder = new DeliveryEncoder();
  const log: string[] = [];
  deliveryOrigin.current = UNKNOWN_ORIGIN;
  applyBatch(
    recordingTarget(log),
    concat(
      encoder.fence("cccccccccccc", "", "").slice(),
      encoder.toAll("x", []).slice(),
    ),
  );
  deliveryOrigin.current = undefined;
  assert.deepEqual(log, ["all x from cccccccccccc"]);
});

Deno.test("a malformed FENCE is refused with the whole batch", () => {
  const encoder = new DeliveryEncoder();
  const log: string[] = [];
  const fence = encoder.fence("cccccccccccc", A, B).slice();
  assert.throws(
    () =>
      applyBatch(
        recordingTarget(log),
        concat(encoder.toAll("x", []).slice(), fence.subarray(0, 10)),
      ),
    (error) =>
      error instanceof GatewayError && error.code === "invalid_argument",
  );
  assert.deepEqual(log, []);
});

class MemorySender implements BatchSender {
  readonly via = "grpc" as const;
  readonly batches: Uint8Array[] = [];
  constructor(readonly events: BatchSenderEvents) {}
  write(buffer: Uint8Array, bytes: number): void {
    this.batches.push(
      buffer.slice(BATCH_HEADROOM, BATCH_HEADROOM + bytes),
    );
  }
  abort(reason: GatewayError): void {
    this.events.onEnded(reason);
  }
  finish(): void {}
}

Deno.test("DeliveryLink names its sender on every new connection once it carried a fence", async () => {
  const senders: MemorySender[] = [];
  const deliveries = new DeliveryLink(
    {
      open(events) {
        const sender = new MemorySender(events);
        senders.push(sender);
        return sender;
      },
    },
    "10.0.0.7:9101",
    { maxQueuedBytes: 1 << 20, deadlineMs: 60_000 },
  );
  const encoder = new DeliveryEncoder();
  const tick = () => new Promise((resolve) => setTimeout(resolve, 0));
  const plain = encoder.toAll("x", []).slice();
  const announcement = encoder.fence("cccccccccccc", "", "").slice();
  const fence = encoder.fence("cccccccccccc", A, B).slice();

  const first = deliveries.send(plain);
  await tick();
  assert.deepEqual(senders[0]!.batches, [plain], "no announcement before");
  senders[0]!.events.onAcknowledged(1);
  await first;

  const fenced = deliveries.fence(fence, announcement);
  await tick();
  // The fence names the sender already on this connection.
  assert.deepEqual(senders[0]!.batches[1], concat(announcement, fence));
  senders[0]!.events.onAcknowledged(1);
  await fenced;
  const later = deliveries.send(plain);
  await tick();
  assert.deepEqual(senders[0]!.batches[2], plain, "once per connection");
  senders[0]!.events.onAcknowledged(1);
  await later;

  // The connection breaks: the next one starts with the announcement.
  senders[0]!.events.onEnded(new GatewayError("unavailable", "gone"));
  const again = deliveries.send(plain);
  await tick();
  assert.equal(senders.length, 2);
  assert.deepEqual(senders[1]!.batches, [concat(announcement, plain)]);
  senders[1]!.events.onAcknowledged(1);
  await again;
  deliveries.close();
});
