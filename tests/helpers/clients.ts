// Test helpers: WebSocket clients. TestClient queues what it receives;
// RawClient speaks the protocol on a bare TCP connection, to stop reading,
// stop answering pings or send what a browser never would.

import type { Message } from "../../mod.ts";

/** A WebSocket client that queues what it receives. */
export class TestClient implements AsyncDisposable {
  readonly socket: WebSocket;
  readonly #queue: Message[] = [];
  #waiter: (() => void) | undefined;
  #closed: Promise<CloseEvent>;
  id = "";

  constructor(url: string) {
    this.socket = new WebSocket(url);
    this.socket.binaryType = "arraybuffer";
    this.socket.onmessage = (event) => {
      this.#queue.push(
        typeof event.data === "string"
          ? event.data
          : new Uint8Array(event.data as ArrayBuffer),
      );
      this.#waiter?.();
    };
    this.#closed = new Promise((resolve) => {
      this.socket.addEventListener("close", (event) => {
        resolve(event);
        this.#waiter?.();
      });
    });
  }

  /** Connects to an echo service and reads the `id:` greeting. */
  static async connect(port: number, path = "/"): Promise<TestClient> {
    const client = new TestClient(`ws://127.0.0.1:${port}${path}`);
    const greeting = await client.next();
    if (typeof greeting !== "string" || !greeting.startsWith("id:")) {
      throw new Error(`expected an id greeting, got ${String(greeting)}`);
    }
    client.id = greeting.slice(3);
    return client;
  }

  /** The next message; rejects after `timeoutMs`. */
  async next(timeoutMs = 5000): Promise<Message> {
    const deadline = Date.now() + timeoutMs;
    while (this.#queue.length === 0) {
      if (this.socket.readyState === WebSocket.CLOSED) {
        throw new Error("socket closed while waiting for a message");
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#waiter = undefined;
    }
    return this.#queue.shift()!;
  }

  /** The next `n` messages. */
  async take(n: number): Promise<Message[]> {
    const out: Message[] = [];
    for (let i = 0; i < n; i++) out.push(await this.next());
    return out;
  }

  /** Messages received and not yet read. */
  get pending(): readonly Message[] {
    return this.#queue;
  }

  /** Resolves with the close event. */
  get closed(): Promise<CloseEvent> {
    return this.#closed;
  }

  async close(): Promise<void> {
    if (this.socket.readyState < WebSocket.CLOSING) this.socket.close();
    await this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A frame that a raw client read. */
export interface Frame {
  readonly opcode: number;
  readonly payload: Uint8Array;
}

/**
 * A WebSocket client on a bare TCP connection: it completes the handshake
 * and then does only what the test tells it, so it can stop reading or stop
 * answering pings.
 */
export class RawClient implements AsyncDisposable {
  readonly conn: Deno.TcpConn;
  #buffer: Uint8Array;

  private constructor(conn: Deno.TcpConn, rest: Uint8Array) {
    this.conn = conn;
    this.#buffer = rest;
  }

  /**
   * Connects and sends the upgrade request for `path`; resolves once the
   * response head arrived. Throws with the status line when it is not 101.
   */
  static async connect(
    port: number,
    path = "/",
    headers: Record<string, string> = {},
  ): Promise<RawClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const key = btoa(
      String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))),
    );
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`)
      .join("");
    await conn.write(new TextEncoder().encode(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
        `Upgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
        `${extra}\r\n`,
    ));
    let head: Uint8Array = new Uint8Array(0);
    const chunk = new Uint8Array(4096);
    let end = -1;
    while (end < 0) {
      const n = await conn.read(chunk);
      if (n === null) {
        conn.close();
        throw new Error("connection closed during the handshake");
      }
      head = concat(head, chunk.subarray(0, n));
      end = indexOfHeadEnd(head);
    }
    const text = new TextDecoder().decode(head.subarray(0, end));
    if (!text.startsWith("HTTP/1.1 101")) {
      conn.close();
      throw new Error(text); // the status line and the headers
    }
    return new RawClient(conn, head.slice(end + 4));
  }

  /**
   * Sends one masked frame; with `fin` false, a fragment that more
   * (continuation frames, opcode 0) must follow.
   */
  async send(opcode: number, payload: Uint8Array, fin = true): Promise<void> {
    const length = payload.length;
    const b0 = (fin ? 0x80 : 0) | opcode;
    const header = length < 126
      ? [b0, 0x80 | length]
      : length < 65536
      ? [b0, 0x80 | 126, length >> 8, length & 0xff]
      : [
        b0,
        0x80 | 127,
        0,
        0,
        0,
        0,
        (length >>> 24) & 0xff,
        (length >>> 16) & 0xff,
        (length >>> 8) & 0xff,
        length & 0xff,
      ];
    const mask = crypto.getRandomValues(new Uint8Array(4));
    const masked = new Uint8Array(length);
    for (let i = 0; i < length; i++) masked[i] = payload[i]! ^ mask[i & 3]!;
    const frame = new Uint8Array(header.length + 4 + length);
    frame.set(header);
    frame.set(mask, header.length);
    frame.set(masked, header.length + 4);
    let written = 0;
    while (written < frame.length) {
      written += await this.conn.write(frame.subarray(written));
    }
  }

  /** The next frame of any kind; undefined at the end of the stream. */
  async nextFrame(): Promise<Frame | undefined> {
    const chunk = new Uint8Array(1 << 16);
    while (true) {
      const frame = this.#nextFrame();
      if (frame !== undefined) return frame;
      const n = await this.conn.read(chunk);
      if (n === null) return undefined;
      this.#buffer = concat(this.#buffer, chunk.subarray(0, n));
    }
  }

  /** Reads frames until a close frame or the end of the stream. */
  async readUntilClose(): Promise<{ frames: number; close?: Frame }> {
    let frames = 0;
    const chunk = new Uint8Array(1 << 16);
    while (true) {
      let frame: Frame | undefined;
      while ((frame = this.#nextFrame()) !== undefined) {
        if (frame.opcode === 0x8) return { frames, close: frame };
        frames++;
      }
      const n = await this.conn.read(chunk);
      if (n === null) return { frames };
      this.#buffer = concat(this.#buffer, chunk.subarray(0, n));
    }
  }

  #nextFrame(): Frame | undefined {
    const b = this.#buffer;
    if (b.length < 2) return undefined;
    let length = b[1]! & 0x7f;
    let offset = 2;
    if (length === 126) {
      if (b.length < 4) return undefined;
      length = (b[2]! << 8) | b[3]!;
      offset = 4;
    } else if (length === 127) {
      if (b.length < 10) return undefined;
      length = Number(new DataView(b.buffer, b.byteOffset + 2).getBigUint64(0));
      offset = 10;
    }
    if (b.length < offset + length) return undefined;
    const frame = {
      opcode: b[0]! & 0x0f,
      payload: b.slice(offset, offset + length),
    };
    this.#buffer = b.subarray(offset + length);
    return frame;
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

/** The code and reason of a close frame. */
export function closeOf(frame: Frame): { code: number; reason: string } {
  const p = frame.payload;
  return {
    code: p.length >= 2 ? (p[0]! << 8) | p[1]! : 1005,
    reason: new TextDecoder().decode(p.subarray(2)),
  };
}

/** The bytes of `parts`, one after the other, in a new array. */
export function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function indexOfHeadEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (
      bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 &&
      bytes[i + 3] === 10
    ) return i;
  }
  return -1;
}
