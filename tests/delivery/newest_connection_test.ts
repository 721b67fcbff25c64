// One sender's batches are applied from its newest connection only
// (internal/delivery/newest_connections.ts): a receiving service with both
// transports, and senders that name their connections as services do. An
// older connection that still delivers once a newer one has (as a cut
// link's old TCP connection does when the link is back and its kernel
// retransmits) is dropped and ended; nothing of it is applied after the
// newer one's batches.

import assert from "node:assert/strict";
import { GatewayError, type Message } from "../../mod.ts";
import { createLogger } from "../../internal/base/logger.ts";
import type {
  BatchSender,
  BatchSenderEvents,
} from "../../internal/delivery/batch_sender.ts";
import {
  DeliveryEncoder,
  type DeliveryTarget,
} from "../../internal/delivery/codec.ts";
import { deliverEndpoint } from "../../internal/delivery/grpc_endpoint.ts";
import { GrpcBatchSender } from "../../internal/delivery/grpc_sender.ts";
import { type LinkId, LinkIds } from "../../internal/delivery/link_id.ts";
import { NewestConnections } from "../../internal/delivery/newest_connections.ts";
import { listenDeliveryPort } from "../../internal/delivery/port_listener.ts";
import {
  encodeHello,
  PortBatchSender,
} from "../../internal/delivery/port_sender.ts";
import type { ReceiverOptions } from "../../internal/delivery/receiver.ts";
import {
  BATCH_HEADROOM,
  LINK_HEADER,
  LINK_VERSION,
  PORT_MESSAGE,
} from "../../internal/delivery/wire.ts";
import { openRpcChannel } from "../../internal/grpc/rpc_channel.ts";
import { listenRpc } from "../../internal/grpc/rpc_server.ts";
import { eventually } from "../helpers/waits.ts";

const logger = createLogger("test", "error");

/** Records the text of each message applied, in order. */
class RecordingTarget implements DeliveryTarget {
  readonly log: string[] = [];
  toAll(): void {}
  toClient(_clientId: string, message: Message): void {
    this.log.push(String(message));
  }
  toUids(): void {}
  toGroups(): void {}
  close(): void {}
}

/** What a sender reported. */
class Events implements BatchSenderEvents {
  acknowledged = 0;
  ended: GatewayError | undefined;
  onReady(): void {}
  onAcknowledged(batches: number): void {
    this.acknowledged += batches;
  }
  onEnded(error: GatewayError): void {
    this.ended = error;
  }
  onDeliveryPort(): void {}
}

type Via = "grpc" | "port";

/** A receiving service: the Deliver endpoint and a delivery port. */
async function startReceiver(receiving: ReceiverOptions) {
  const target = new RecordingTarget();
  const port = listenDeliveryPort({
    hostname: "127.0.0.1",
    port: 0,
    target,
    receiving,
    readMaxBytes: 1 << 20,
    helloTimeoutMs: 2000,
    logger,
  });
  const rpc = await listenRpc({
    hostname: "127.0.0.1",
    port: 0,
    routes: () => {},
    rawMethods: [deliverEndpoint(target, () => port.port, receiving)],
    readMaxBytes: 1 << 20,
    pingIntervalMs: 1000,
    pingTimeoutMs: 2000,
    logger,
  });
  const address = `127.0.0.1:${rpc.port}`;
  const channels: ReturnType<typeof openRpcChannel>[] = [];
  const senders: BatchSender[] = [];
  return {
    target,
    address,
    port: port.port,
    /** A connection named `link` (none: unnamed), on `via`. */
    open(via: Via, link: LinkId | undefined): Sender {
      const events = new Events();
      let sender: BatchSender;
      if (via === "grpc") {
        const channel = openRpcChannel(address, {
          pingIntervalMs: 1000,
          pingTimeoutMs: 2000,
        });
        channels.push(channel);
        sender = new GrpcBatchSender(channel.openCall, address, events, link);
      } else {
        sender = new PortBatchSender(
          () => Deno.connect({ hostname: "127.0.0.1", port: port.port }),
          () => Promise.resolve(undefined),
          address,
          events,
          link,
        );
      }
      senders.push(sender);
      return { sender, events };
    },
    async [Symbol.asyncDispose]() {
      for (const sender of senders) {
        sender.abort(new GatewayError("closed", "done"));
      }
      for (const channel of channels) channel.close();
      await rpc.close(0);
      await port.close();
    },
  };
}

interface Sender {
  readonly sender: BatchSender;
  readonly events: Events;
}

const encoder = new DeliveryEncoder();

/** Writes one batch with one message, `text`, to a client. */
function send({ sender }: Sender, text: string): void {
  const batch = encoder.toClient("0123456789ab.1", text).slice();
  const buffer = new Uint8Array(BATCH_HEADROOM + batch.length);
  buffer.set(batch, BATCH_HEADROOM);
  sender.write(buffer, batch.length);
}

async function acknowledged(s: Sender, batches: number, what: string) {
  await eventually(
    `${what}: ${batches} acknowledged`,
    () => s.events.acknowledged >= batches,
  );
}

/** Why `s` ended, once it has (bounded). */
async function endOf(
  s: { readonly events: Events },
  what: string,
): Promise<GatewayError> {
  await eventually(`${what} ends`, () => s.events.ended !== undefined, 5000);
  return s.events.ended!;
}

const VIAS: Via[] = ["grpc", "port"];

for (const olderVia of VIAS) {
  for (const newerVia of VIAS) {
    Deno.test(`newest connection: an older ${olderVia} connection that delivers after a newer ${newerVia} one is dropped and ended`, async () => {
      await using receiver = await startReceiver({
        connections: new NewestConnections(),
      });
      const ids = new LinkIds();
      const older = receiver.open(olderVia, ids.next());
      send(older, "old-1");
      send(older, "old-2");
      await acknowledged(older, 2, "the older connection");
      // The sender moved on (reconnected, or moved to the delivery port).
      const newer = receiver.open(newerVia, ids.next());
      send(newer, "new-1");
      await acknowledged(newer, 1, "the newer connection");
      // What the older connection still carries arrives late.
      send(older, "old-3");
      send(older, "old-4");
      const error = await endOf(older, "the older connection");
      assert.equal(error.code, "unavailable", error.message);
      assert.match(error.message, /replaced by a newer connection/);
      send(newer, "new-2");
      await acknowledged(newer, 2, "the newer connection");
      assert.deepEqual(receiver.target.log, [
        "old-1",
        "old-2",
        "new-1",
        "new-2",
      ]);
      assert.equal(older.events.acknowledged, 2, "late batches unacknowledged");
      assert.equal(newer.events.ended, undefined);
    });
  }
}

Deno.test("newest connection: an older connection that first delivers late is dropped, also after the newer one ended", async () => {
  await using receiver = await startReceiver({
    connections: new NewestConnections(),
  });
  const ids = new LinkIds();
  const olderLink = ids.next();
  const newer = receiver.open("port", ids.next());
  send(newer, "new-1");
  await acknowledged(newer, 1, "the newer connection");
  newer.sender.abort(new GatewayError("closed", "the link broke"));
  // Opened before the newer one (a lower sequence number), heard only now.
  for (const via of VIAS) {
    const older = receiver.open(via, olderLink);
    send(older, `old-${via}`);
    const error = await endOf(older, `the older ${via} connection`);
    assert.match(error.message, /replaced by a newer connection/, via);
    assert.equal(older.events.acknowledged, 0, via);
  }
  // The sender's next connection is newer still.
  const next = receiver.open("grpc", ids.next());
  send(next, "new-2");
  await acknowledged(next, 1, "the next connection");
  assert.deepEqual(receiver.target.log, ["new-1", "new-2"]);
});

Deno.test("newest connection: other senders and unnamed connections are not affected", async () => {
  await using receiver = await startReceiver({
    connections: new NewestConnections(),
  });
  // Two services (each its own sender id), and an older peer that names
  // no connection.
  const x = receiver.open("port", new LinkIds().next());
  const y = receiver.open("grpc", new LinkIds().next());
  const unnamed = [receiver.open("grpc", undefined)];
  unnamed.push(receiver.open("port", undefined));
  for (let i = 0; i < 5; i++) {
    for (
      const [name, s] of [["x", x], ["y", y], ["u0", unnamed[0]!], [
        "u1",
        unnamed[1]!,
      ]] as const
    ) {
      send(s, `${name}-${i}`);
    }
  }
  for (const s of [x, y, ...unnamed]) await acknowledged(s, 5, "each");
  assert.equal(receiver.target.log.length, 20);
  for (const name of ["x", "y", "u0", "u1"]) {
    assert.deepEqual(
      receiver.target.log.filter((t) => t.startsWith(`${name}-`)),
      [0, 1, 2, 3, 4].map((i) => `${name}-${i}`),
    );
  }
  for (const s of [x, y, ...unnamed]) assert.equal(s.events.ended, undefined);
});

Deno.test("newest connection: a malformed link id is refused on either transport", async () => {
  await using receiver = await startReceiver({
    connections: new NewestConnections(),
  });
  // The delivery port: a version 3 hello with a bad id.
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: receiver.port,
  });
  const hello = encodeHello(undefined, { sender: "ok", seq: 1 });
  assert.equal(hello[4], LINK_VERSION);
  hello.set(new TextEncoder().encode("o!.1"), hello.length - 4);
  await conn.write(hello);
  const answer = new Uint8Array(512);
  const n = await conn.read(answer);
  conn.close();
  assert.ok(n !== null && n > 4);
  assert.equal(answer[0], PORT_MESSAGE.ERROR);
  assert.match(
    new TextDecoder().decode(answer.subarray(4, n)),
    /Malformed delivery link id/,
  );
  // The Deliver call: a bad LINK_HEADER.
  const channel = openRpcChannel(receiver.address, {
    pingIntervalMs: 1000,
    pingTimeoutMs: 2000,
  });
  try {
    const events = new Events();
    new GrpcBatchSender(
      (path, headers) =>
        channel.openCall(path, { ...headers, [LINK_HEADER]: "no-seq" }),
      receiver.address,
      events,
    );
    const error = await endOf({ events }, "the call");
    assert.equal(error.code, "invalid_argument", error.message);
    assert.match(error.message, /Malformed delivery link id/);
  } finally {
    channel.close();
  }
});
