// What a client may send on its WebSocket, enforced while it arrives: a
// message larger than maxMessageBytes is refused with 1009 as soon as a
// frame header says so, across fragments too, and nothing more of it is
// kept (the service's memory stays flat, and it keeps serving); text that
// is not UTF-8 closes with 1007; frames that break the protocol with 1002.
// Against a service process, over raw TCP, as an attacker would send it.

import assert from "node:assert/strict";
import { closeOf, RawClient, TestClient } from "./helpers/clients.ts";
import { startLabService, startRegisterProcess } from "./helpers/processes.ts";
import { GC_FLAGS, rssAfterGc } from "./helpers/memory.ts";
import { scrape } from "./helpers/prometheus.ts";
import { settles } from "./helpers/waits.ts";

const MiB = 1024 * 1024;
const TEXT = 0x1;
const BINARY = 0x2;
const CONTINUATION = 0x0;
const LIMIT = 4 * MiB;
const TOO_BIG = {
  code: 1009,
  reason: `message too big: the limit is ${LIMIT} bytes`,
};

/** Sends frames until `frames` are out or the service cuts the connection. */
async function sendAll(
  client: RawClient,
  frames: Iterable<[number, Uint8Array, boolean]>,
): Promise<number> {
  let sent = 0;
  try {
    for (const [opcode, payload, fin] of frames) {
      await client.send(opcode, payload, fin);
      sent += payload.length;
    }
  } catch {
    // Cut off: fine, the close frame came first.
  }
  return sent;
}

function* fragments(
  count: number,
  bytes: number,
  lastFin: boolean,
): Iterable<[number, Uint8Array, boolean]> {
  const chunk = new Uint8Array(bytes).fill(0x61); // "a"
  for (let i = 0; i < count; i++) {
    yield [i === 0 ? TEXT : CONTINUATION, chunk, lastFin && i === count - 1];
  }
}

/** The lab's echo still answers: the service keeps serving. */
async function stillServes(port: number): Promise<void> {
  await using client = await TestClient.connect(port);
  client.socket.send("ping");
  assert.equal(await client.next(), "echo:ping");
}

Deno.test("maxMessageBytes holds while a message arrives, fragmented or not", async (t) => {
  const register = await startRegisterProcess();
  const service = await startLabService(register.address, [
    "--max-message-bytes",
    String(LIMIT),
    "--max-send-bytes",
    String(2 * LIMIT), // the echoes, a byte longer

    "--rate-limit",
    "off", // many fragments: the message limit, not the rate, must act
  ], { denoFlags: GC_FLAGS });
  const port = service.info.port;
  const pid = service.child.pid;
  try {
    // Warm up: a message of the largest size there and back, so that the
    // buffers a legal message needs exist before measuring. Both
    // measurements follow a full garbage collection: the bound is on what
    // the service keeps (V8 collects refused buffers lazily, after tens of
    // MiB, so RSS alone may sit higher for a while).
    {
      await using client = await TestClient.connect(port);
      client.socket.send(new Uint8Array(LIMIT - 1));
      const echoed = await client.next();
      assert.ok(echoed instanceof Uint8Array && echoed.length === LIMIT);
    }
    const before = await rssAfterGc(port, pid);

    for (const round of [1, 2, 3]) {
      await t.step(
        `fragments that never end: 1009, nothing kept (${round})`,
        async () => {
          await using raw = await RawClient.connect(port);
          const closing = raw.readUntilClose();
          // 256 MiB in fragments of 256 KiB, none of them the last.
          const sent = await sendAll(raw, fragments(1024, 256 * 1024, false));
          const { close } = await settles("the close frame", closing, 30_000);
          assert.ok(close !== undefined, "a close frame");
          assert.deepEqual(closeOf(close), TOO_BIG);
          const grew = (await rssAfterGc(port, pid)) - before;
          console.log(
            `sent ${(sent / MiB).toFixed(0)} MiB of fragments; RSS grew by ${
              (grew / MiB).toFixed(1)
            } MiB`,
          );
          assert.ok(sent > 16 * LIMIT, `sent only ${sent} bytes`);
          assert.ok(
            grew < 4 * LIMIT,
            `RSS grew by ${(grew / MiB).toFixed(1)} MiB`,
          );
        },
      );
    }

    await t.step("fragments that do end, past the limit: 1009", async () => {
      await using raw = await RawClient.connect(port);
      const closing = raw.readUntilClose();
      await sendAll(raw, fragments(128, 64 * 1024, true)); // 8 MiB
      const { close } = await settles("the close frame", closing);
      assert.ok(close !== undefined, "a close frame");
      assert.deepEqual(closeOf(close), TOO_BIG);
    });

    await t.step("a frame header announcing 1 GiB: 1009 at once", async () => {
      await using raw = await RawClient.connect(port);
      const mask = [1, 2, 3, 4];
      // FIN, binary, masked, 64-bit length 2^30, and no payload at all.
      await raw.conn.write(
        new Uint8Array([0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, ...mask]),
      );
      const { close } = await settles("the close frame", raw.readUntilClose());
      assert.ok(close !== undefined, "a close frame");
      assert.deepEqual(closeOf(close), TOO_BIG);
    });

    await t.step("up to the limit, in fragments, arrives whole", async () => {
      await using raw = await RawClient.connect(port);
      const greeting = await raw.nextFrame(); // "id:<clientId>"
      assert.match(new TextDecoder().decode(greeting?.payload), /^id:/);
      // "é" split between two fragments: valid once joined.
      const e = new TextEncoder().encode("é");
      await raw.send(TEXT, new TextEncoder().encode("echo "), false);
      await raw.send(CONTINUATION, e.subarray(0, 1), false);
      await raw.send(CONTINUATION, e.subarray(1), true);
      const frame = await raw.nextFrame();
      assert.ok(frame !== undefined);
      assert.equal(new TextDecoder().decode(frame.payload), "echo:echo é");
      // A binary message of exactly the limit, in four parts, is taken.
      const quarter = new Uint8Array(LIMIT / 4);
      await raw.send(BINARY, quarter, false);
      await raw.send(CONTINUATION, quarter, false);
      await raw.send(CONTINUATION, quarter, false);
      await raw.send(CONTINUATION, quarter, true);
      const whole = await raw.nextFrame(); // 0xec, then the message
      assert.equal(whole?.payload.length, LIMIT + 1);
      await raw.send(TEXT, new TextEncoder().encode("after"));
      const echoed = await raw.nextFrame();
      assert.ok(echoed !== undefined);
      assert.equal(new TextDecoder().decode(echoed.payload), "echo:after");
    });

    await t.step("text that is not UTF-8: 1007", async () => {
      await using raw = await RawClient.connect(port);
      await raw.send(TEXT, new Uint8Array([0x68, 0x69, 0xff, 0xfe]));
      const { close } = await settles("the close frame", raw.readUntilClose());
      assert.ok(close !== undefined, "a close frame");
      assert.equal(closeOf(close).code, 1007);
    });

    await t.step("frames that break the protocol: 1002", async () => {
      await using unmasked = await RawClient.connect(port);
      await unmasked.conn.write(new Uint8Array([0x81, 0x02, 0x68, 0x69]));
      const first = await settles("closed", unmasked.readUntilClose());
      assert.equal(closeOf(first.close!).code, 1002);
      await using orphan = await RawClient.connect(port);
      await orphan.send(CONTINUATION, new Uint8Array(3));
      const second = await settles("closed", orphan.readUntilClose());
      assert.equal(closeOf(second.close!).code, 1002);
    });

    await stillServes(port);
    const metrics = await scrape(`http://127.0.0.1:${port}/metrics`);
    assert.equal(metrics.value("wsgate_message_too_big_closes_total"), 5);
    assert.equal(metrics.value("wsgate_protocol_error_closes_total"), 3);
  } finally {
    await service.child.stop();
    await register.child.stop();
  }
});
