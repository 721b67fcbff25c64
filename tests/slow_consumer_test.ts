// Slow consumers: a client that stops reading is closed with 1008 once
// maxBufferedBytes wait for it, while the other clients of the same group
// get every message, and the service's memory stays bounded.

import assert from "node:assert/strict";
import { startService } from "../mod.ts";
import { closeOf, RawClient, TestClient } from "./helpers/clients.ts";
import {
  greeter,
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import {
  rssOf,
  startLabService,
  startRegisterProcess,
} from "./helpers/processes.ts";
import { settles } from "./helpers/waits.ts";

const MiB = 1024 * 1024;
/** What the flood sends: 64 MiB to each member of the group. */
const FLOOD_COUNT = 1024;
const FLOOD_BYTES = 64 * 1024;
/**
 * The bound: the service's RSS may grow by at most this much over the flood.
 * Without the buffer limit it would grow by about the whole flood (64 MiB,
 * less what the kernel's socket buffers hold) for the stuck client alone.
 */
const RSS_BOUND = 24 * MiB;

/** A WebSocket client that only counts the bytes it receives. */
class CountingReader implements AsyncDisposable {
  readonly socket: WebSocket;
  messages = 0;
  bytes = 0;
  readonly opened: Promise<unknown>;
  readonly closed: Promise<CloseEvent>;

  constructor(url: string) {
    this.socket = new WebSocket(url);
    this.socket.binaryType = "arraybuffer";
    this.socket.onmessage = (event) => {
      if (typeof event.data === "string") return; // the greeting
      this.messages++;
      this.bytes += (event.data as ArrayBuffer).byteLength;
    };
    this.opened = new Promise((resolve) => this.socket.onopen = resolve);
    this.closed = new Promise((resolve) => this.socket.onclose = resolve);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.socket.close();
    await this.closed;
  }
}

Deno.test("maxBufferedBytes closes a client that stops reading, and nobody else slows down", async () => {
  const register = await startRegisterProcess();
  const service = await startLabService(register.address, [
    "--idle-timeout-ms",
    "0", // the buffer limit, not the heartbeat, must catch it
  ]);
  try {
    const port = service.info.port;
    await using control = await TestClient.connect(port);
    await using readerA = new CountingReader(
      `ws://127.0.0.1:${port}/?group=flood,warm`,
    );
    await using readerB = new CountingReader(
      `ws://127.0.0.1:${port}/?group=flood,warm`,
    );
    await Promise.all([readerA.opened, readerB.opened]);
    await using stuck = await RawClient.connect(port, "/?group=flood");
    control.socket.send("!count flood");
    assert.equal(await control.next(), "count:3");

    // Warm up: the service's buffers and code paths exist, and its heap
    // has grown to what a flood to readers takes, before measuring (RSS
    // then stays flat over further floods without a stuck client).
    control.socket.send(`!flood warm ${FLOOD_COUNT} ${FLOOD_BYTES}`);
    assert.equal(await control.next(), "flooded");
    const before = await rssOf(service.child.pid);

    control.socket.send(`!flood flood ${FLOOD_COUNT} ${FLOOD_BYTES}`);
    assert.equal(await control.next(10_000), "flooded");
    const after = await rssOf(service.child.pid);

    // The stuck client was closed and left the group; the readers stayed.
    control.socket.send("!count flood");
    assert.equal(await control.next(), "count:2");
    // The readers got everything: the flood went on at their pace.
    const messages = 2 * FLOOD_COUNT;
    control.socket.send("sync");
    assert.equal(await control.next(), "echo:sync");
    for (const reader of [readerA, readerB]) {
      assert.equal(reader.socket.readyState, WebSocket.OPEN);
      assert.equal(reader.messages, messages);
      assert.equal(reader.bytes, messages * FLOOD_BYTES);
    }
    // Memory stayed bounded.
    assert.ok(
      after - before < RSS_BOUND,
      `RSS grew by ${((after - before) / MiB).toFixed(1)} MiB`,
    );
    // The stuck client, reading at last, finds part of the flood and then
    // the close frame: 1008 with a reason that says why.
    const { frames, close } = await settles(
      "the stuck client reads the close frame",
      stuck.readUntilClose(),
    );
    assert.ok(close !== undefined, "a close frame");
    assert.deepEqual(closeOf(close), {
      code: 1008,
      reason: "slow consumer: too much data waiting",
    });
    assert.ok(frames < FLOOD_COUNT, `got ${frames} of ${FLOOD_COUNT}`);
    // Operators see it in the metrics.
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`))
      .text();
    assert.match(metrics, /^wsgate_slow_consumer_closes_total 1$/m);
    console.log(
      `RSS ${(before / MiB).toFixed(1)} -> ${(after / MiB).toFixed(1)} MiB; ` +
        `the stuck client got ${frames} of ${FLOOD_COUNT} messages`,
    );
  } finally {
    await service.child.stop();
    await register.child.stop();
  }
});

Deno.test("maxBufferedBytes does not hold a burst sent in one go against a fast client", async () => {
  await using register = await startLocalRegister();
  await using service = await startService(
    greeter,
    localServiceOptions(register.address),
  );
  await using client = await TestClient.connect(service.port);
  // 3 MiB without yielding: Deno writes none of it before the event loop
  // turns, then the kernel takes it and the client reads it.
  const chunk = new Uint8Array(3 * 1024);
  for (let i = 0; i < 1024; i++) {
    await service.api.sendToClient(client.id, chunk);
  }
  await service.api.sendToClient(client.id, "end");
  const messages = await client.take(1025);
  assert.equal(messages.at(-1), "end");
  assert.equal(client.socket.readyState, WebSocket.OPEN);
  assert.equal(await service.api.isOnline(client.id), true);
});
