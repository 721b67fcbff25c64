// gRPC's wire framing over HTTP/2, for calls served or made without
// Connect (the Deliver stream of internal/delivery/): each message is a
// flag byte (1 = compressed), a big-endian u32 length and the message; the
// status travels in the `grpc-status` and `grpc-message` trailers.

import { GatewayError } from "../../errors.ts";
import { errorOfStatus, grpcCodeOf } from "./grpc_status.ts";

/** Bytes before each gRPC message: the compressed flag and the length. */
export const GRPC_FRAME_HEADER_BYTES = 5;

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
   * @throws {GatewayError} `resource_exhausted` for a message that is too
   * long, `internal` for a compressed one.
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
    while (bytes.length - at >= GRPC_FRAME_HEADER_BYTES) {
      const flags = bytes[at]!;
      const length = bytes[at + 1]! * 0x1000000 +
        (bytes[at + 2]! << 16 | bytes[at + 3]! << 8 | bytes[at + 4]!);
      if (flags & 1) {
        throw new GatewayError(
          "internal",
          "protocol error: a compressed message, but the call has no grpc-encoding",
        );
      }
      if (length > this.#maxBytes) {
        throw new GatewayError(
          "resource_exhausted",
          `message size ${length} is larger than configured readMaxBytes ${this.#maxBytes}`,
        );
      }
      const start = at + GRPC_FRAME_HEADER_BYTES;
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

/** The trailers that end a call with `error`, or with OK. */
export function statusTrailers(error?: GatewayError): Record<string, string> {
  if (error === undefined) return { "grpc-status": "0" };
  return {
    "grpc-status": String(grpcCodeOf(error)),
    "grpc-message": encodeGrpcMessage(error.message),
  };
}

/**
 * The error a call to `address` ended with, from its `grpc-status` and
 * `grpc-message` headers or trailers; undefined when they say OK or have no
 * status.
 */
export function statusError(
  headers: Record<string, string | string[] | undefined>,
  address: string,
): GatewayError | undefined {
  const status = headers["grpc-status"];
  if (status === undefined || status === "0") return undefined;
  const message = headers["grpc-message"];
  return errorOfStatus(
    Number(status),
    typeof message === "string" ? decodeGrpcMessage(message) : "",
    address,
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
