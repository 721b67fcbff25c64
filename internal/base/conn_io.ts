// Reading and writing a raw Deno connection (the delivery port, the HTTP
// server, WebSockets): ordered writes without awaiting each one (what is
// written while a write is under way goes out together in the next one), a
// read buffer that keeps what was read until it is consumed, and a close
// that does not mind a connection closed already.

/** Options of {@linkcode ConnWriter}. */
export interface ConnWriterOptions {
  /**
   * Start writing a microtask after the first write instead of at once, so
   * that everything written in one turn goes out in one system call.
   *
   * @default {false}
   */
  readonly coalesce?: boolean;
}

/** Writes to a connection in order, coalescing writes made meanwhile. */
export class ConnWriter {
  readonly #conn: Deno.Conn;
  readonly #coalesce: boolean;
  #queue: Uint8Array[] = [];
  #queued = 0;
  /** Bytes of the write under way not yet taken by the connection. */
  #inFlight = 0;
  #writing: Promise<void> | undefined;
  #failed = false;
  #written = 0;

  constructor(conn: Deno.Conn, options: ConnWriterOptions = {}) {
    this.#conn = conn;
    this.#coalesce = options.coalesce ?? false;
  }

  /** Bytes written here and not yet taken by the connection. */
  get pending(): number {
    return this.#queued + this.#inFlight;
  }

  /** Bytes the connection took so far. */
  get written(): number {
    return this.#written;
  }

  /** Whether a write failed: nothing more is written. */
  get failed(): boolean {
    return this.#failed;
  }

  /**
   * Queues `bytes` (not copied: the caller must not change them). A failed
   * write drops everything after it; the connection's reads see why.
   */
  write(bytes: Uint8Array): void {
    if (this.#failed) return;
    this.#queue.push(bytes);
    this.#queued += bytes.length;
    this.#writing ??= this.#coalesce
      ? Promise.resolve().then(() => this.#drain())
      : this.#drain();
  }

  /** Drops what is queued and not being written yet; writes go on. */
  discardQueued(): void {
    this.#queue = [];
    this.#queued = 0;
  }

  /** Drops what is queued and writes nothing more. */
  drop(): void {
    this.#failed = true;
    this.#queue = [];
    this.#queued = 0;
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
        this.#inFlight = bytes.length;
        for (let at = 0; at < bytes.length;) {
          if (this.#failed) break;
          const n = await this.#conn.write(bytes.subarray(at));
          at += n;
          this.#written += n;
          this.#inFlight = bytes.length - at;
        }
        this.#inFlight = 0;
      }
    } catch {
      this.drop();
    } finally {
      this.#inFlight = 0;
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
  readonly #initial: number;
  #bytes: Uint8Array;
  #start = 0;
  #end = 0;

  /**
   * @param initial Bytes to start with; the buffer grows as a message
   * needs, and goes back to this size once it is empty.
   */
  constructor(initial = 64 * 1024) {
    this.#initial = initial;
    this.#bytes = new Uint8Array(initial);
  }

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
    if (this.#start === this.#end) {
      this.#start = this.#end = 0;
      if (this.#bytes.length > 4 * this.#initial) {
        this.#bytes = new Uint8Array(this.#initial);
      }
    }
  }

  /** Adds bytes read elsewhere after the waiting ones. */
  append(bytes: Uint8Array): void {
    this.#room(this.size + bytes.length);
    this.#bytes.set(bytes, this.#end);
    this.#end += bytes.length;
  }

  /**
   * Reads once from `conn`, making room for at least `need` waiting bytes
   * first. Resolves false at the end of the stream.
   */
  async fill(conn: Deno.Conn, need: number): Promise<boolean> {
    this.#room(need);
    const n = await conn.read(this.#bytes.subarray(this.#end));
    if (n === null) return false;
    this.#end += n;
    return true;
  }

  /** Makes room for `need` waiting bytes from the start of the buffer. */
  #room(need: number): void {
    if (this.#start + need <= this.#bytes.length) return;
    const bytes = need > this.#bytes.length
      ? new Uint8Array(Math.max(need, 2 * this.#bytes.length))
      : this.#bytes;
    bytes.set(this.#bytes.subarray(this.#start, this.#end));
    this.#end -= this.#start;
    this.#start = 0;
    this.#bytes = bytes;
  }
}
