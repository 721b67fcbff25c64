// Reading and writing a Deno connection of the delivery port: ordered
// writes without awaiting each one (what is written while a write is under
// way goes out together in the next one), a read buffer that keeps what was
// read until it is consumed, and a close that does not mind a connection
// closed already.

/** Writes to a connection in order, coalescing writes made meanwhile. */
export class ConnWriter {
  readonly #conn: Deno.Conn;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #writing: Promise<void> | undefined;
  #failed = false;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /**
   * Queues `bytes` (not copied: the caller must not change them). A failed
   * write drops everything after it; the connection's reads see why.
   */
  write(bytes: Uint8Array): void {
    if (this.#failed) return;
    this.#queue.push(bytes);
    this.#queued += bytes.length;
    this.#writing ??= this.#drain();
  }

  /** Resolves when everything queued so far was written, or writing failed. */
  flushed(): Promise<void> {
    return this.#writing ?? Promise.resolve();
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queued > 0) {
        const queue = this.#queue;
        let bytes = queue[0]!;
        if (queue.length > 1) {
          bytes = new Uint8Array(this.#queued);
          let at = 0;
          for (const part of queue) {
            bytes.set(part, at);
            at += part.length;
          }
        }
        this.#queue = [];
        this.#queued = 0;
        for (let at = 0; at < bytes.length;) {
          at += await this.#conn.write(bytes.subarray(at));
        }
      }
    } catch {
      this.#failed = true;
      this.#queue = [];
      this.#queued = 0;
    } finally {
      this.#writing = undefined;
    }
  }
}

/** Closes `conn`, which may be closed already. */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Closed already.
  }
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
