// Ordered writes to a Deno connection without awaiting each one: what is
// written while a write is under way goes out together in the next one.
// Also a close that does not mind a connection closed already.

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
