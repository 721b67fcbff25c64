// The server side of one WebSocket connection, framed here rather than by
// Deno.upgradeWebSocket, so that the limits hold while a message arrives:
// a message (one frame or many fragments) larger than `maxMessageBytes` is
// refused with 1009 as soon as a frame header says so, and nothing more of
// it is kept; text that is not UTF-8 closes with 1007; frames that break
// the protocol close with 1002. Reading can be paused (the application is
// behind), which leaves the client to TCP's backpressure. Writes made in
// one turn of the event loop go out in one system call.

import type { Message } from "../../api.ts";
import type { AcceptedSocket, SocketEvents } from "./accepted_socket.ts";
import { closeQuietly, ConnWriter, ReadBuffer } from "../base/conn_io.ts";
import {
  encodeClose,
  encodeFrame,
  type FrameEncoder,
  OPCODE,
} from "./frames.ts";

/** Close codes of RFC 6455 that a server sends. */
export const CLOSE_CODE = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  NO_STATUS: 1005,
  ABNORMAL: 1006,
  INVALID_DATA: 1007,
  POLICY: 1008,
  TOO_BIG: 1009,
} as const;

/** Options of {@linkcode ServerWebSocket}. */
export interface ServerWebSocketOptions {
  /** The largest message a client may send, in bytes (UTF-8 for text). */
  readonly maxMessageBytes: number;
  /** Encodes what is sent; shared by the sockets of a service. */
  readonly frames: FrameEncoder;
  /**
   * How long a close handshake may take before the connection is cut, in
   * milliseconds.
   */
  readonly closeTimeoutMs: number;
}

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** One client's WebSocket, from the 101 on. */
export class ServerWebSocket implements AcceptedSocket {
  readonly #options: ServerWebSocketOptions;
  #events: SocketEvents | undefined;
  #conn: Deno.Conn | undefined;
  #writer: ConnWriter | undefined;
  /** Small at first: most clients send small messages, if any. */
  readonly #input = new ReadBuffer(2048);
  #state = CONNECTING;
  /** The close frame we sent, if any: code and reason to report. */
  #closeSent: [number, string] | undefined;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #paused: PromiseWithResolvers<void> | undefined;
  /** Fragments of the message being received, and their bytes. */
  #fragments: Uint8Array[] = [];
  #fragmentBytes = 0;
  #fragmentOpcode = 0;
  /** Payload bytes still to skip of a data frame that comes after our close. */
  #skip = 0;
  /** After a frame that breaks the protocol, the rest is not parsed. */
  #discardAll = false;
  /** When anything last arrived from the client (Date.now()). */
  lastReceived: number = Date.now();
  /** Whether a ping was sent since anything last arrived. */
  pinged = false;

  constructor(options: ServerWebSocketOptions) {
    this.#options = options;
  }

  /** Whether messages can be sent. */
  get isOpen(): boolean {
    return this.#state === OPEN;
  }

  /** Bytes sent and not yet taken by the connection. */
  get bufferedAmount(): number {
    return this.#writer?.pending ?? 0;
  }

  /** Bytes the connection took so far: it grows while the client reads. */
  get bytesWritten(): number {
    return this.#writer?.written ?? 0;
  }

  /** Where the socket reports; set before the connection is attached. */
  listen(events: SocketEvents): void {
    this.#events = events;
  }

  /**
   * Starts the socket on `conn`, after the 101 was written; `rest` is what
   * the client sent after its request head.
   */
  attach(conn: Deno.Conn, rest: Uint8Array): void {
    if (this.#state !== CONNECTING) {
      closeQuietly(conn);
      return;
    }
    this.#conn = conn;
    this.#writer = new ConnWriter(conn, { coalesce: true });
    this.#input.append(rest);
    this.#state = OPEN;
    this.lastReceived = Date.now();
    this.#events?.open();
    this.#read(conn).catch(() => this.#finish(CLOSE_CODE.ABNORMAL, ""));
  }

  /** Sends a message; nothing when the socket is not open. */
  send(message: Message): void {
    if (this.#state !== OPEN) return;
    this.#writer!.write(this.#options.frames.frame(message));
  }

  /** Sends `message` as the `wsgate.v1` data frame of `seq`. */
  sendNumbered(seq: number, message: Message): void {
    if (this.#state !== OPEN) return;
    const [head, payload] = this.#options.frames.numbered(seq, message);
    this.#writer!.write(head);
    this.#writer!.write(payload);
  }

  /** Sends a ping. */
  ping(): void {
    if (this.#state !== OPEN) return;
    this.pinged = true;
    this.#writer!.write(PING);
  }

  /**
   * Starts the closing handshake after what is queued: the connection ends
   * when the client answers, or after `closeTimeoutMs`.
   */
  close(code: number, reason: string): void {
    if (this.#state === CONNECTING) {
      this.#state = CLOSED;
      this.#events?.close(code, reason);
      return;
    }
    if (this.#state !== OPEN) return;
    this.#state = CLOSING;
    this.#closeSent = [code, reason];
    this.#writer!.write(encodeClose(code, reason));
    this.#resume();
    this.#closeTimer = setTimeout(
      () => this.#finish(code, reason),
      this.#options.closeTimeoutMs,
    );
  }

  /**
   * Closes a client that does not read: what waits to be written is
   * dropped but for the write under way, the close frame follows it, and
   * the connection is cut after `closeTimeoutMs` unless the client reads
   * up to the close frame and answers before.
   */
  abandon(code: number, reason: string): void {
    if (this.#state === OPEN) this.#writer!.discardQueued();
    this.close(code, reason);
  }

  /**
   * Ends the connection at once, dropping what waits to be written, and
   * reports `code`: for a client that is gone, stuck or not reading.
   */
  terminate(code: number, reason: string): void {
    if (this.#state === CLOSED) return;
    if (this.#state === CONNECTING) return this.close(code, reason);
    this.#writer!.drop();
    this.#finish(code, reason);
  }

  /** Stops reading from the client until {@linkcode resume}. */
  pause(): void {
    this.#paused ??= Promise.withResolvers<void>();
  }

  /** Reads again after {@linkcode pause}. */
  resume(): void {
    this.#resume();
  }

  #resume(): void {
    const paused = this.#paused;
    this.#paused = undefined;
    paused?.resolve();
  }

  async #read(conn: Deno.Conn): Promise<void> {
    const input = this.#input;
    for (;;) {
      // Every frame that is complete in the buffer, then more bytes.
      for (;;) {
        if (this.#state === CLOSED) return;
        if (this.#paused !== undefined && this.#state === OPEN) break;
        if ((this.#skip > 0 || this.#discardAll) && input.size === 0) {
          // Skipped bytes go through one scratch buffer, not this socket's.
          const room = this.#discardAll
            ? SCRATCH.length
            : Math.min(this.#skip, SCRATCH.length);
          const n = await conn.read(SCRATCH.subarray(0, room));
          if (n === null) {
            const [code, reason] = this.#closeSent ?? [CLOSE_CODE.ABNORMAL, ""];
            return this.#finish(code, reason);
          }
          if (!this.#discardAll) this.#skip -= n;
          continue;
        }
        const need = this.#frame();
        if (need > 0) {
          if (!await input.fill(conn, need)) {
            // Hung up: after our close frame, that ends the handshake.
            const [code, reason] = this.#closeSent ?? [CLOSE_CODE.ABNORMAL, ""];
            return this.#finish(code, reason);
          }
          this.lastReceived = Date.now();
          this.pinged = false;
        }
        if (need < 0) return;
      }
      await this.#paused?.promise;
    }
  }

  /**
   * Handles the next frame if it is complete in the buffer: returns 0 when
   * one was handled, the bytes needed when more must be read first, -1 when
   * reading is over.
   */
  #frame(): number {
    const input = this.#input;
    if (this.#discardAll) {
      input.consume(input.size);
      return 1;
    }
    if (this.#skip > 0) {
      const n = Math.min(this.#skip, input.size);
      input.consume(n);
      this.#skip -= n;
      return this.#skip > 0 ? 1 : 0;
    }
    const bytes = input.view();
    if (bytes.length < 2) return 2;
    const b0 = bytes[0]!;
    const b1 = bytes[1]!;
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    if ((b0 & 0x70) !== 0) return this.#refuse(1002, "reserved bits are set");
    if ((b1 & 0x80) === 0) {
      return this.#refuse(1002, "client frames must be masked");
    }
    let length = b1 & 0x7f;
    let at = 2;
    if (length === 126) {
      if (bytes.length < 4) return 4;
      length = bytes[2]! << 8 | bytes[3]!;
      at = 4;
    } else if (length === 127) {
      if (bytes.length < 10) return 10;
      if (bytes[2]! & 0x80) {
        return this.#refuse(1002, "a frame length with its top bit set");
      }
      // Exact up to 2^53, and far past any limit beyond.
      length = 0;
      for (let i = 2; i < 10; i++) length = length * 256 + bytes[i]!;
      at = 10;
    }
    const control = opcode >= 0x8;
    if (!control && this.#state !== OPEN) {
      // After our close frame: data is skipped as it arrives, not kept.
      if (bytes.length < at + 4) return at + 4;
      input.consume(at + 4);
      this.#skip = length;
      return 0;
    }
    if (control) {
      if (!fin || length > 125) {
        return this.#refuse(1002, "a control frame is fragmented or too long");
      }
      if (
        opcode !== OPCODE.CLOSE && opcode !== OPCODE.PING &&
        opcode !== OPCODE.PONG
      ) {
        return this.#refuse(1002, `opcode ${opcode} is not defined`);
      }
    } else {
      if (opcode > OPCODE.BINARY) {
        return this.#refuse(1002, `opcode ${opcode} is not defined`);
      }
      const continuation = opcode === OPCODE.CONTINUATION;
      if (continuation !== (this.#fragmentOpcode !== 0)) {
        return this.#refuse(
          1002,
          continuation
            ? "a continuation frame without a message"
            : "a new message before the last one ended",
        );
      }
      // The limit holds across fragments, before any of this one is read.
      const max = this.#options.maxMessageBytes;
      if (this.#fragmentBytes + length > max) {
        return this.#refuse(1009, `message too big: the limit is ${max} bytes`);
      }
    }
    const total = at + 4 + length;
    if (bytes.length < total) return total;
    const mask = at;
    const payload = bytes.slice(at + 4, total);
    for (let i = 0; i < length; i++) payload[i]! ^= bytes[mask + (i & 3)]!;
    input.consume(total);
    if (control) return this.#control(opcode, payload);
    if (this.#state !== OPEN) return 0;
    if (opcode !== OPCODE.CONTINUATION) this.#fragmentOpcode = opcode;
    if (!fin) {
      this.#fragments.push(payload);
      this.#fragmentBytes += length;
      return 0;
    }
    let data = payload;
    if (this.#fragments.length > 0) {
      this.#fragments.push(payload);
      data = new Uint8Array(this.#fragmentBytes + length);
      let offset = 0;
      for (const part of this.#fragments) {
        data.set(part, offset);
        offset += part.length;
      }
      this.#fragments = [];
      this.#fragmentBytes = 0;
    }
    const type = this.#fragmentOpcode;
    this.#fragmentOpcode = 0;
    if (type === OPCODE.TEXT) {
      let text: string;
      try {
        text = utf8.decode(data);
      } catch {
        return this.#refuse(1007, "text that is not UTF-8");
      }
      this.#events?.message(text);
    } else {
      this.#events?.message(data);
    }
    return 0;
  }

  #control(opcode: number, payload: Uint8Array): number {
    if (opcode === OPCODE.PING) {
      if (this.#state === OPEN) {
        this.#writer!.write(encodeFrame(OPCODE.PONG, payload));
      }
      return 0;
    }
    if (opcode === OPCODE.PONG) return 0;
    // A close frame: its code, if any, must be one a peer may send.
    let code: number = CLOSE_CODE.NO_STATUS;
    let reason = "";
    if (payload.length === 1) {
      return this.#refuse(1002, "a close frame of 1 byte");
    }
    if (payload.length >= 2) {
      code = payload[0]! << 8 | payload[1]!;
      const valid = (code >= 1000 && code <= 1014 && code !== 1004 &&
        code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
      if (!valid) {
        return this.#refuse(1002, `close code ${code} is not allowed`);
      }
      try {
        reason = utf8.decode(payload.subarray(2));
      } catch {
        return this.#refuse(1007, "a close reason that is not UTF-8");
      }
    }
    if (this.#state === OPEN) {
      // The client closes: answer with its code, then hang up.
      this.#state = CLOSING;
      this.#writer!.write(
        code === CLOSE_CODE.NO_STATUS
          ? encodeFrame(OPCODE.CLOSE, new Uint8Array(0))
          : encodeClose(code, ""),
      );
      this.#writer!.flushed().then(() => this.#finish(code, reason));
      return -1;
    }
    // The answer to our close.
    const [ours, why] = this.#closeSent ?? [code, reason];
    this.#writer!.flushed().then(() => this.#finish(ours, why));
    return -1;
  }

  /**
   * Closes with `code` for what the client sent. Reading goes on, so that
   * the client's close frame ends the handshake (closing with its data
   * unread would reset the connection before it saw ours): the data frames
   * that follow are skipped as they arrive (after 1002, everything is), and
   * the connection is cut after `closeTimeoutMs` at the latest.
   */
  #refuse(code: number, reason: string): number {
    if (code === CLOSE_CODE.PROTOCOL_ERROR) this.#discardAll = true;
    this.#fragments = [];
    this.#fragmentBytes = 0;
    this.#fragmentOpcode = 0;
    if (this.#state === OPEN) {
      this.#events?.refused(code, reason);
      this.close(code, reason);
    }
    return 0;
  }

  #finish(code: number, reason: string): void {
    if (this.#state === CLOSED) return;
    this.#state = CLOSED;
    clearTimeout(this.#closeTimer);
    this.#resume();
    if (this.#conn !== undefined) closeQuietly(this.#conn);
    this.#fragments = [];
    this.#events?.close(code, reason);
  }
}

const PING = encodeFrame(OPCODE.PING, new Uint8Array(0));
/** Where the bytes of skipped frames are read to, for every socket. */
const SCRATCH = new Uint8Array(64 * 1024);
