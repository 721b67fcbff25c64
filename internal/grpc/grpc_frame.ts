// gRPC's wire framing over HTTP/2, for the one method that skips Connect
// (the Deliver stream, see deliver_endpoint.ts and delivery_link.ts): each
// message is a flag byte (1 = compressed), a big-endian u32 length and the
// message; the status travels in the `grpc-status` and `grpc-message`
// trailers. Also the protobuf varints that its hand-made messages need.

import { Code, ConnectError } from "@connectrpc/connect";

/** Bytes before each message: the compressed flag and the length. */
export const FRAME_HEADER_BYTES = 5;

/** Splits a stream of DATA chunks into gRPC messages. */
export class GrpcFrameReader {
  readonly #maxBytes: number;
  /** Bytes of an incomplete frame carried over from earlier chunks. */
  #rest: Uint8Array | undefined;

  /** Messages longer than `maxBytes` fail with `resource_exhausted`. */
  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /** Whether part of a frame is waiting for more bytes. */
  get partial(): boolean {
    return this.#rest !== undefined;
  }

  /**
   * Calls `onMessage` with each message completed by `chunk`, a view that
   * stays valid after the call.
   *
   * @throws {ConnectError} for a message that is too long or compressed.
   */
  push(chunk: Uint8Array, onMessage: (message: Uint8Array) => void): void {
    const rest = this.#rest;
    let bytes = chunk;
    if (rest !== undefined) {
      bytes = new Uint8Array(rest.length + chunk.length);
      bytes.set(rest);
      bytes.set(chunk, rest.length);
      this.#rest = undefined;
    }
    let at = 0;
    while (bytes.length - at >= FRAME_HEADER_BYTES) {
      const flags = bytes[at]!;
      const length = bytes[at + 1]! * 0x1000000 +
        (bytes[at + 2]! << 16 | bytes[at + 3]! << 8 | bytes[at + 4]!);
      if (flags & 1) {
        throw new ConnectError(
          "protocol error: a compressed message, but the call has no grpc-encoding",
          Code.Internal,
        );
      }
      if (length > this.#maxBytes) {
        throw new ConnectError(
          `message size ${length} is larger than configured readMaxBytes ${this.#maxBytes}`,
          Code.ResourceExhausted,
        );
      }
      const start = at + FRAME_HEADER_BYTES;
      if (bytes.length - start < length) break;
      at = start + length;
      onMessage(bytes.subarray(start, at));
    }
    if (at < bytes.length) this.#rest = bytes.slice(at);
  }
}

/** Writes the frame header of a `length`-byte message at `at`. */
export function writeFrameHeader(
  into: Uint8Array,
  at: number,
  length: number,
): void {
  into[at] = 0;
  into[at + 1] = length >>> 24;
  into[at + 2] = (length >>> 16) & 0xff;
  into[at + 3] = (length >>> 8) & 0xff;
  into[at + 4] = length & 0xff;
}

/** Bytes of `value` as a protobuf varint. */
export function varintSize(value: number): number {
  let size = 1;
  for (let v = value; v > 0x7f; v >>>= 7) size++;
  return size;
}

/** Writes `value` as a protobuf varint at `at`; returns where it ends. */
export function writeVarint(
  into: Uint8Array,
  at: number,
  value: number,
): number {
  while (value > 0x7f) {
    into[at++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  into[at++] = value;
  return at;
}

/**
 * The protobuf varint at `at` and where it ends; undefined when the bytes
 * end first or it is longer than 5 bytes (32 bits).
 */
export function readVarint(
  from: Uint8Array,
  at: number,
): { value: number; end: number } | undefined {
  let value = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    const b = from[at++];
    if (b === undefined) return undefined;
    value += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return { value, end: at };
  }
  return undefined;
}

/** The trailers that end a call with `error`, or with OK. */
export function statusTrailers(
  error?: ConnectError,
): Record<string, string> {
  if (error === undefined) return { "grpc-status": "0" };
  return {
    "grpc-status": String(error.code),
    "grpc-message": encodeGrpcMessage(error.rawMessage),
  };
}

/**
 * The error a call ended with, from its `grpc-status` and `grpc-message`
 * headers or trailers; undefined when they say OK or have no status.
 */
export function statusError(
  headers: Record<string, string | string[] | undefined>,
): ConnectError | undefined {
  const status = headers["grpc-status"];
  if (status === undefined || status === "0") return undefined;
  const code = Number(status);
  const message = headers["grpc-message"];
  return new ConnectError(
    typeof message === "string" ? decodeGrpcMessage(message) : "",
    Number.isInteger(code) && code > 0 && code <= 16 ? code : Code.Unknown,
  );
}

/** Percent-encodes what gRPC does not allow raw in `grpc-message`. */
function encodeGrpcMessage(message: string): string {
  let out = "";
  for (const byte of new TextEncoder().encode(message)) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25
      ? String.fromCharCode(byte)
      : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

function decodeGrpcMessage(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
