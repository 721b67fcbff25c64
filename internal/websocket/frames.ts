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
}
