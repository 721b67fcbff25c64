// A client's WebSocket in the user's own server: a standard `WebSocket`
// from Deno.upgradeWebSocket, seen as an AcceptedSocket. Deno frames it and
// hands over whole messages only, so what ServerWebSocket enforces while a
// message arrives is enforced here once it has arrived: a message larger
// than `maxMessageBytes` is refused with 1009 (Deno keeps up to 64 MiB of
// it meanwhile). Reading cannot be paused: a message that arrives while
// paused is refused with 1008. What waits to be written cannot be dropped,
// nor the connection cut: a close that the client does not answer within
// `closeTimeoutMs` is reported as done, and the connection is left to the
// user's server and the kernel.

import type { Message } from "../../api.ts";
import { utf8Length } from "../base/utf8.ts";
import type { AcceptedSocket, SocketEvents } from "./accepted_socket.ts";
import { CLOSE_CODE } from "./server_socket.ts";

/** Options of {@linkcode StandardSocket}. */
export interface StandardSocketOptions {
  /** The largest message a client may send, in bytes (UTF-8 for text). */
  readonly maxMessageBytes: number;
  /**
   * How long a close handshake may take before the socket reports the
   * connection closed, in milliseconds.
   */
  readonly closeTimeoutMs: number;
}

/** What a message that arrives while paused is refused with. */
const PAUSED_REASON = "too many messages waiting";

/** A standard `WebSocket` of the server side, as an AcceptedSocket. */
export class StandardSocket implements AcceptedSocket {
  readonly #socket: WebSocket;
  readonly #options: StandardSocketOptions;
  #events: SocketEvents | undefined;
  /** Whether `close` was reported: nothing is reported after it. */
  #closed = false;
  /** The close frame we sent, if any: code and reason to report. */
  #closeSent: [number, string] | undefined;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #paused = false;

  constructor(socket: WebSocket, options: StandardSocketOptions) {
    this.#socket = socket;
    this.#options = options;
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      if (!this.#closed) this.#events?.open();
    };
    socket.onmessage = (event) => this.#receive(event.data);
    // Deno may report a close more than once (an idle timeout, then the
    // end of the connection): #finish keeps the first.
    socket.onclose = (event) => this.#finish(event.code, event.reason);
    // An error is followed by a close event.
    socket.onerror = () => {};
  }

  get isOpen(): boolean {
    return !this.#closed && this.#socket.readyState === WebSocket.OPEN;
  }

  get bufferedAmount(): number {
    return this.#socket.bufferedAmount;
  }

  listen(events: SocketEvents): void {
    this.#events = events;
  }

  send(message: Message): void {
    if (this.isOpen) this.#socket.send(message as Uint8Array<ArrayBuffer>);
  }

  sendNumbered(seq: number, message: Message): void {
    if (!this.isOpen) return;
    if (typeof message === "string") {
      this.#socket.send(`${seq}:${message}`);
      return;
    }
    let head = 1;
    for (let n = seq; n >= 0x80; n = Math.floor(n / 0x80)) head++;
    const bytes = new Uint8Array(head + message.length);
    let at = 0;
    let value = seq;
    while (value >= 0x80) {
      bytes[at++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    bytes[at] = value;
    bytes.set(message, head);
    this.#socket.send(bytes);
  }

  close(code: number, reason: string): void {
    if (this.#closed || this.#closeSent !== undefined) return;
    this.#closeSent = [code, reason];
    const connecting = this.#socket.readyState === WebSocket.CONNECTING;
    this.#socket.close(code, reason);
    if (connecting) {
      // Never opened: there is no handshake to wait for.
      this.#finish(code, reason);
      return;
    }
    this.#closeTimer = setTimeout(
      () => this.#finish(code, reason),
      this.#options.closeTimeoutMs,
    );
  }

  /**
   * Closes as {@linkcode close} does: what waits to be written stays in
   * Deno's hands, and the close frame goes out after it.
   */
  abandon(code: number, reason: string): void {
    this.close(code, reason);
  }

  /**
   * Reports the connection closed at once; the close frame goes out after
   * what waits to be written, and the connection ends when the client
   * answers or goes away.
   */
  terminate(code: number, reason: string): void {
    if (this.#closed) return;
    if (this.#closeSent === undefined) {
      this.#closeSent = [code, reason];
      this.#socket.close(code, reason);
    }
    this.#finish(code, reason);
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
  }

  #receive(data: unknown): void {
    // After our close frame, data is ignored, as on the own port.
    if (this.#closed || this.#closeSent !== undefined) return;
    const message: Message = typeof data === "string"
      ? data
      : new Uint8Array(data as ArrayBuffer);
    const max = this.#options.maxMessageBytes;
    if (isLongerThan(message, max)) {
      this.#refuse(
        CLOSE_CODE.TOO_BIG,
        `message too big: the limit is ${max} bytes`,
      );
    } else if (this.#paused) {
      this.#refuse(CLOSE_CODE.POLICY, PAUSED_REASON);
    } else this.#events?.message(message);
  }

  #refuse(code: number, reason: string): void {
    this.#events?.refused(code, reason);
    this.close(code, reason);
  }

  #finish(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#closeTimer);
    const [reported, why] = this.#closeSent ??
      [isCloseCode(code) ? code : CLOSE_CODE.ABNORMAL, reason];
    this.#events?.close(reported, why);
  }
}

/** Whether `message` takes more than `max` bytes (UTF-8 for text). */
function isLongerThan(message: Message, max: number): boolean {
  if (typeof message !== "string") return message.byteLength > max;
  if (message.length * 3 <= max) return false; // at most 3 bytes per unit
  if (message.length > max) return true; // at least 1 byte per unit
  return utf8Length(message) > max;
}

/**
 * Whether a close event's code came from a close frame: Deno reports 0
 * when the connection failed.
 */
function isCloseCode(code: number): boolean {
  return code >= 1000 && code <= 4999;
}
