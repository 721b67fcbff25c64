// Fuzz of the WebSocket port: hundreds of connections that send random
// frames (every opcode, FIN and reserved bits, masked or not, lengths around
// every boundary and past maxMessageBytes, fragments in and out of order,
// text that is and is not UTF-8, close frames with any code) or random HTTP
// requests (garbage, overlong heads, bad upgrades, bodies that lie about
// their length) or raw bytes. The service must answer every HTTP request
// with a status below 500, close WebSockets only with well-formed close
// frames, and afterwards still serve a real client and hold no client.
//
// The random seed is printed; set WSGATE_FUZZ_SEED to replay a run.

import assert from "node:assert/strict";
import { type Application, startService } from "../mod.ts";
import { closeOf, RawClient, TestClient } from "./helpers/clients.ts";
import {
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { fuzzSeed, prng } from "./helpers/random.ts";
import { eventually } from "./helpers/waits.ts";
import { scrape } from "./helpers/prometheus.ts";

const SESSIONS = 600;
const CONCURRENCY = 16;
const MAX_MESSAGE = 4096;
const encoder = new TextEncoder();

const echo: Application = {
  onConnect(clientId, { api }) {
    return api.sendToClient(clientId, `id:${clientId}`);
  },
  async onMessage(clientId, message, { api }) {
    await api.sendToClient(clientId, message);
  },
};

class Fuzz {
  readonly random: () => number;
  constructor(seed: number) {
    this.random = prng(seed);
  }
  int(n: number): number {
    return Math.floor(this.random() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
  length(): number {
    return this.pick([
      0,
      1,
      this.int(125),
      125,
      126,
      this.int(2000),
      MAX_MESSAGE - 1,
      MAX_MESSAGE,
      MAX_MESSAGE + 1,
      this.int(3 * MAX_MESSAGE),
      65535,
      65536,
    ]);
  }
  payload(n: number): Uint8Array {
    return this.random() < 0.5
      ? encoder.encode("é😀a".repeat(n).slice(0, n)).subarray(0, n)
      : this.bytes(n);
  }

  /** One frame, as bytes, sometimes broken. */
  frame(): Uint8Array {
    const opcode = this.pick([0, 0, 1, 1, 2, 2, 3, 8, 9, 10, 11, 15]);
    const fin = this.random() < 0.7 ? 0x80 : 0;
    const rsv = this.random() < 0.05 ? 0x40 : 0;
    const masked = this.random() < 0.95;
    let payload = this.payload(this.length());
    if (opcode === 8 && this.random() < 0.8) {
      const code = this.pick([
        1000,
        1001,
        1002,
        1004,
        1005,
        1006,
        1015,
        2999,
        3000,
        4999,
        5000,
        this.int(65536),
      ]);
      const reason = this.random() < 0.2
        ? this.bytes(this.int(10))
        : encoder.encode("bye");
      payload = new Uint8Array([code >> 8, code & 0xff, ...reason]);
    }
    const n = payload.length;
    const head = n < 126
      ? [fin | rsv | opcode, (masked ? 0x80 : 0) | n]
      : n < 65536
      ? [fin | rsv | opcode, (masked ? 0x80 : 0) | 126, n >> 8, n & 0xff]
      : [
        fin | rsv | opcode,
        (masked ? 0x80 : 0) | 127,
        0,
        0,
        0,
        0,
        (n >>> 24) & 0xff,
        (n >>> 16) & 0xff,
        (n >>> 8) & 0xff,
        n & 0xff,
      ];
    const mask = masked ? this.bytes(4) : new Uint8Array(0);
    const frame = new Uint8Array(head.length + mask.length + n);
    frame.set(head);
    frame.set(mask, head.length);
    for (let i = 0; i < n; i++) {
      frame[head.length + mask.length + i] = masked
        ? payload[i]! ^ mask[i & 3]!
        : payload[i]!;
    }
    // Sometimes only part of it.
    return this.random() < 0.05
      ? frame.subarray(0, this.int(frame.length))
      : frame;
  }

  /** A request head, often broken. */
  request(port: number): Uint8Array {
    const method = this.pick(["GET", "POST", "PUT", "G\x01T", "", "CONNECT"]);
    const target = this.pick([
      "/",
      "/healthz",
      "/metrics",
      "/api/sendToAll",
      "*",
      "",
      "/%00",
      "/" + "a".repeat(this.int(20_000)),
    ]);
    const version = this.pick([
      "HTTP/1.1",
      "HTTP/1.0",
      "HTTP/2",
      "HTTP/1.1",
      "FOO",
    ]);
    const headers: string[] = [];
    if (this.random() < 0.9) headers.push(`Host: 127.0.0.1:${port}`);
    if (this.random() < 0.4) {
      headers.push("Upgrade: websocket", "Connection: Upgrade");
      headers.push(`Sec-WebSocket-Version: ${this.pick(["13", "8", ""])}`);
      headers.push(
        `Sec-WebSocket-Key: ${
          this.pick(["dGhlIHNhbXBsZSBub25jZQ==", "short", ""])
        }`,
      );
    }
    if (this.random() < 0.3) {
      headers.push(
        `Content-Length: ${
          this.pick(["10", "-1", "99999999999", "abc", "5, 6"])
        }`,
      );
    }
    if (this.random() < 0.2) headers.push("Transfer-Encoding: chunked");
    if (this.random() < 0.1) {
      headers.push("X-Big: " + "b".repeat(this.int(40_000)));
    }
    if (this.random() < 0.1) {
      headers.push("Bad Header: x", ": empty", "X-Ctl: a\x01b");
    }
    for (let i = this.int(3) === 0 ? this.int(150) : 0; i > 0; i--) {
      headers.push(`X-${i}: ${i}`);
    }
    const head = `${method} ${target} ${version}\r\n${
      headers.join("\r\n")
    }\r\n\r\n`;
    const body = this.random() < 0.3
      ? this.bytes(this.int(64))
      : new Uint8Array(0);
    const bytes = new Uint8Array([...encoder.encode(head), ...body]);
    return this.random() < 0.1
      ? bytes.subarray(0, this.int(bytes.length))
      : bytes;
  }
}

/** Reads what the server sends until it closes or `ms` pass; never throws. */
async function drain(conn: Deno.Conn, ms: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch {
      // Closed already.
    }
  }, ms);
  try {
    const buffer = new Uint8Array(65536);
    let n: number | null;
    while ((n = await conn.read(buffer)) !== null) {
      chunks.push(buffer.slice(0, n));
    }
  } catch {
    // Closed by the timer, or reset.
  } finally {
    clearTimeout(timer);
  }
  const out = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

Deno.test("fuzz: random frames and requests on the WebSocket port leave the service correct", async () => {
  const fuzz = new Fuzz(fuzzSeed("websocket fuzz"));
  await using register = await startLocalRegister();
  await using service = await startService(
    echo,
    localServiceOptions(register.address, {
      maxMessageBytes: MAX_MESSAGE,
      headerTimeoutMs: 1000,
      idleTimeoutMs: 2000,
      logLevel: "error",
    }),
  );
  const port = service.port;
  const statuses = new Map<number, number>();
  const closeCodes = new Map<number, number>();
  let next = 0;

  async function session(kind: number): Promise<void> {
    if (kind === 0) {
      // A WebSocket, then random frames.
      const raw = await RawClient.connect(port);
      const frames: Uint8Array[] = [];
      for (let i = 1 + fuzz.int(12); i > 0; i--) frames.push(fuzz.frame());
      try {
        for (const frame of frames) await raw.conn.write(frame);
      } catch {
        // Closed by the service meanwhile.
      }
      const reply = await settle(raw);
      if (reply !== undefined) {
        closeCodes.set(reply, (closeCodes.get(reply) ?? 0) + 1);
      }
      raw.close();
      return;
    }
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(
        kind === 1 ? fuzz.request(port) : fuzz.bytes(fuzz.int(3000)),
      );
    } catch {
      // Closed by the service meanwhile.
    }
    const answer = new TextDecoder().decode(await drain(conn, 3000));
    for (const match of answer.matchAll(/HTTP\/1\.1 (\d{3}) /g)) {
      const status = Number(match[1]);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
  }

  /** The close code the service sent, checked well-formed, if any. */
  async function settle(raw: RawClient): Promise<number | undefined> {
    const timer = setTimeout(() => raw.close(), 3000);
    try {
      for (;;) {
        const frame = await raw.nextFrame();
        if (frame === undefined) return undefined;
        if (frame.opcode !== 0x8) continue;
        if (frame.payload.length === 0) return 1005;
        assert.ok(frame.payload.length >= 2, "a close frame of one byte");
        const { code, reason } = closeOf(frame);
        new TextDecoder("utf-8", { fatal: true }).decode(
          frame.payload.subarray(2),
        );
        assert.ok(
          (code >= 1000 && code <= 1014 &&
            ![1004, 1005, 1006].includes(code)) ||
            (code >= 3000 && code <= 4999),
          `close code ${code} (${reason})`,
        );
        return code;
      }
    } catch (error) {
      if (error instanceof assert.AssertionError) throw error;
      return undefined; // reset
    } finally {
      clearTimeout(timer);
    }
  }

  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < SESSIONS) {
      next++;
      await session(fuzz.pick([0, 0, 1, 1, 2]));
    }
  }));

  console.log(
    `statuses ${JSON.stringify(Object.fromEntries(statuses))}; close codes ${
      JSON.stringify(Object.fromEntries(closeCodes))
    }`,
  );
  for (const status of statuses.keys()) {
    // 505 for HTTP/2 or a made-up version; never 500, an internal error.
    assert.ok(status < 500 || status === 505, `an answer with ${status}`);
  }
  assert.ok(
    closeCodes.has(1002) && closeCodes.has(1009),
    "the fuzz reached the limits",
  );
  // Nothing leaked, and a real client is served.
  await eventually(
    "every fuzz client is gone",
    async () => (await service.api.getAllClientCount()) === 0,
  );
  await using client = await TestClient.connect(port);
  client.socket.send("still here");
  assert.equal(await client.next(), "still here");
  const metrics = await scrape(`http://127.0.0.1:${port}/metrics`);
  assert.ok(metrics.value("wsgate_protocol_error_closes_total") > 0);
});
