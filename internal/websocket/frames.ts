// WebSocket frames (RFC 6455, section 5), as a server writes them:
// unmasked, one frame per message.

import type { Message } from "../../api.ts";

/** Frame opcodes. */
export const OPCODE = {
  CONTINUATION: 0x0,
  TEXT: 0x1,
  BINARY: 0x2,
  CLOSE: 0x8,
  PING: 0x9,
  PONG: 0xa,
} as const;

/** The most a frame header takes (a server's frames are not masked). */
export const MAX_HEADER_BYTES = 10;

const encoder = new TextEncoder();

/** A frame of `opcode` carrying `payload`, FIN set. */
export function encodeFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const length = payload.length;
  const head = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const frame = new Uint8Array(head + length);
  frame[0] = 0x80 | opcode;
  if (length < 126) {
    frame[1] = length;
  } else if (length < 65536) {
    frame[1] = 126;
    frame[2] = length >>> 8;
    frame[3] = length & 0xff;
  } else {
    frame[1] = 127;
    // Lengths here stay below 2^32.
    frame[6] = length >>> 24;
    frame[7] = (length >>> 16) & 0xff;
    frame[8] = (length >>> 8) & 0xff;
    frame[9] = length & 0xff;
  }
  frame.set(payload, head);
  return frame;
}

/** A close frame with `code` and `reason` (cut to fit 125 bytes). */
export function encodeClose(code: number, reason: string): Uint8Array {
  const text = encoder.encode(reason).subarray(0, 123);
  const payload = new Uint8Array(2 + text.length);
  payload[0] = code >>> 8;
  payload[1] = code & 0xff;
  payload.set(text, 2);
  return encodeFrame(OPCODE.CLOSE, payload);
}

/**
 * Encodes messages into frames. The frame of the last text is kept: a
 * string sent to many clients in a row (a broadcast) is encoded to UTF-8
 * once. The frame of the last bytes is kept until the current task ends:
 * bytes sent to many clients in one go are copied once, and bytes that the
 * caller changes between two tasks, as a WebSocket allows, are copied
 * again. One per service.
 */
export class FrameEncoder {
  #text: string | undefined;
  #frame: Uint8Array = new Uint8Array(0);
  #bytes: Uint8Array | undefined;
  #bytesFrame: Uint8Array = new Uint8Array(0);
  readonly #forgetBytes = () => {
    this.#bytes = undefined;
    this.#bytesFrame = new Uint8Array(0);
  };
  /** The last text that went out numbered, and its UTF-8. */
  #numberedText: string | undefined;
  #numberedUtf8: Uint8Array = new Uint8Array(0);
  /** The copy of the last bytes that went out numbered, until the task ends. */
  #numberedBytes: Uint8Array | undefined;
  #numberedCopy: Uint8Array = new Uint8Array(0);
  readonly #forgetNumbered = () => {
    this.#numberedBytes = undefined;
    this.#numberedCopy = new Uint8Array(0);
  };
  /** Where the heads of numbered frames are cut from. */
  #slab: Uint8Array = new Uint8Array(0);
  #slabAt = 0;

  /** The frame of `message`: text for a string, binary for bytes. */
  frame(message: Message): Uint8Array {
    if (typeof message !== "string") {
      if (message !== this.#bytes) {
        if (this.#bytes === undefined) queueMicrotask(this.#forgetBytes);
        this.#bytesFrame = encodeFrame(OPCODE.BINARY, message);
        this.#bytes = message;
      }
      return this.#bytesFrame;
    }
    if (message !== this.#text) {
      this.#frame = encodeFrame(OPCODE.TEXT, encoder.encode(message));
      this.#text = message;
    }
    return this.#frame;
  }

  /**
   * The frame of `message` numbered `seq` as a `wsgate.v1` data frame
   * (docs/protocol.md): text `<seq>:<text>`, or binary with the seq as an
   * unsigned LEB128 varint before the bytes. Returned in two parts to be
   * written one after the other: the frame's head with the seq (small, cut
   * from a shared slab) and the payload, which is shared: the UTF-8 of the
   * last text is kept, and bytes are copied once per task, so a message
   * sent to many clients, each with its own seq, is encoded once.
   */
  numbered(seq: number, message: Message): [Uint8Array, Uint8Array] {
    let opcode: number;
    let payload: Uint8Array;
    let seqBytes: number;
    if (typeof message === "string") {
      if (message !== this.#numberedText) {
        this.#numberedUtf8 = encoder.encode(message);
        this.#numberedText = message;
      }
      opcode = OPCODE.TEXT;
      payload = this.#numberedUtf8;
      seqBytes = decimalLength(seq) + 1;
    } else {
      if (message !== this.#numberedBytes) {
        if (this.#numberedBytes === undefined) {
          queueMicrotask(this.#forgetNumbered);
        }
        this.#numberedCopy = message.slice();
        this.#numberedBytes = message;
      }
      opcode = OPCODE.BINARY;
      payload = this.#numberedCopy;
      seqBytes = varintLength(seq);
    }
    const length = seqBytes + payload.length;
    const frameHead = length < 126 ? 2 : length < 65536 ? 4 : 10;
    const head = this.#take(frameHead + seqBytes);
    head[0] = 0x80 | opcode;
    if (length < 126) {
      head[1] = length;
    } else if (length < 65536) {
      head[1] = 126;
      head[2] = length >>> 8;
      head[3] = length & 0xff;
    } else {
      head[1] = 127;
      head[2] =
        head[3] =
        head[4] =
        head[5] =
          0;
      head[6] = length >>> 24;
      head[7] = (length >>> 16) & 0xff;
      head[8] = (length >>> 8) & 0xff;
      head[9] = length & 0xff;
    }
    let at = frameHead;
    if (opcode === OPCODE.TEXT) {
      const digits = String(seq);
      for (let i = 0; i < digits.length; i++) {
        head[at++] = digits.charCodeAt(i);
      }
      head[at] = 58; // ":"
    } else {
      let value = seq;
      while (value >= 0x80) {
        head[at++] = (value % 0x80) | 0x80;
        value = Math.floor(value / 0x80);
      }
      head[at] = value;
    }
    return [head, payload];
  }

  /**
   * `n` bytes of the slab, never handed out again (a head is written
   * later, when the connection's turn comes); a new slab when it is full.
   */
  #take(n: number): Uint8Array {
    if (this.#slabAt + n > this.#slab.length) {
      this.#slab = new Uint8Array(SLAB_BYTES);
      this.#slabAt = 0;
    }
    const part = this.#slab.subarray(this.#slabAt, this.#slabAt + n);
    this.#slabAt += n;
    return part;
  }
}

/** The size of the slab that the heads of numbered frames are cut from. */
const SLAB_BYTES = 64 * 1024;

/** Digits of `n` in decimal (an integer from 0 to 2^53). */
function decimalLength(n: number): number {
  let digits = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    digits++;
  }
  return digits;
}

/** Bytes of `n` as an unsigned LEB128 varint. */
function varintLength(n: number): number {
  let bytes = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    bytes++;
  }
  return bytes;
}
