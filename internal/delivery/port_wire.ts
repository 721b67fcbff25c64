// The wire of the delivery port (delivery_port.ts): a TCP or TLS
// connection that carries one peer's Deliver batches with less overhead
// than the gRPC stream. Integers are big-endian.
//
//   client → service   hello: "WSGD", version 1, u16 length, the secret
//                      (UTF-8; empty without one); then batches, each a
//                      u32 length and the `packed` bytes of a
//                      DeliverRequest (delivery_codec.ts).
//   service → client   READY once the hello is accepted; ACK u32 n: n more
//                      batches were applied, in order; ERROR u8 gRPC code,
//                      u16 length, UTF-8 message, then the service closes.

/** The first bytes a client sends. */
export const MAGIC = new Uint8Array([0x57, 0x53, 0x47, 0x44]); // "WSGD"
export const VERSION = 1;
/** Magic, version and the secret's length. */
export const HELLO_HEADER_BYTES = MAGIC.length + 1 + 2;
/** The longest secret a hello may carry. */
export const MAX_SECRET_BYTES = 0xffff;
/** Bytes before each batch: its length. */
export const BATCH_HEADER_BYTES = 4;

export const READY = 1;
export const ACK = 2;
export const ERROR = 3;

/**
 * The response header with which a service's Deliver endpoint tells a
 * peer that it has a delivery port, and which.
 */
export const DELIVERY_PORT_HEADER = "wsgate-delivery-port";

const encoder = new TextEncoder();

/** The hello that opens a connection, with `secret` if any. */
export function encodeHello(secret: string | undefined): Uint8Array {
  const bytes = encoder.encode(secret ?? "");
  const hello = new Uint8Array(HELLO_HEADER_BYTES + bytes.length);
  hello.set(MAGIC);
  hello[MAGIC.length] = VERSION;
  hello[MAGIC.length + 1] = bytes.length >>> 8;
  hello[MAGIC.length + 2] = bytes.length & 0xff;
  hello.set(bytes, HELLO_HEADER_BYTES);
  return hello;
}

/** ACK of `batches` batches. */
export function encodeAck(batches: number): Uint8Array {
  const ack = new Uint8Array(5);
  ack[0] = ACK;
  writeU32(ack, 1, batches);
  return ack;
}

/** ERROR with a gRPC status `code` and `message`. */
export function encodeError(code: number, message: string): Uint8Array {
  const text = encoder.encode(message).subarray(0, 0xffff);
  const error = new Uint8Array(4 + text.length);
  error[0] = ERROR;
  error[1] = code;
  error[2] = text.length >>> 8;
  error[3] = text.length & 0xff;
  error.set(text, 4);
  return error;
}

export function writeU32(into: Uint8Array, at: number, value: number): void {
  into[at] = value >>> 24;
  into[at + 1] = (value >>> 16) & 0xff;
  into[at + 2] = (value >>> 8) & 0xff;
  into[at + 3] = value & 0xff;
}

export function readU32(from: Uint8Array, at: number): number {
  return from[at]! * 0x1000000 +
    (from[at + 1]! << 16 | from[at + 2]! << 8 | from[at + 3]!);
}

/**
 * Bytes read from a connection, kept until they are consumed: reads go
 * into one buffer that grows when a message needs more room.
 */
export class ReadBuffer {
  #bytes = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;

  /** How many bytes are waiting. */
  get size(): number {
    return this.#end - this.#start;
  }

  /** The waiting bytes, from the first unconsumed one. */
  view(): Uint8Array {
    return this.#bytes.subarray(this.#start, this.#end);
  }

  /** Marks `n` waiting bytes as consumed. */
  consume(n: number): void {
    this.#start += n;
    if (this.#start === this.#end) this.#start = this.#end = 0;
  }

  /**
   * Reads once from `conn`, making room for at least `need` waiting bytes
   * first. Resolves false at the end of the stream.
   */
  async fill(conn: Deno.Conn, need: number): Promise<boolean> {
    if (this.#start + need > this.#bytes.length) {
      const bytes = need > this.#bytes.length
        ? new Uint8Array(Math.max(need, 2 * this.#bytes.length))
        : this.#bytes;
      bytes.set(this.#bytes.subarray(this.#start, this.#end));
      this.#end -= this.#start;
      this.#start = 0;
      this.#bytes = bytes;
    }
    const n = await conn.read(this.#bytes.subarray(this.#end));
    if (n === null) return false;
    this.#end += n;
    return true;
  }
}
