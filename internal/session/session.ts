// One `wsgate.v1` client's session: the seq counter of its data frames,
// the frames it may not have received yet (retained up to maxBytes until
// the client acknowledges them), the token that proves the right to it,
// and the connection it is attached to, if any. The hub sends to the
// session; the session numbers what it is sent and hands it on to its
// connection, or keeps it while it has none (detached). It keeps messages
// as they were sent (one broadcast is one string for every session that
// keeps it) and frames them when they go out.

import type { Message } from "../../api.ts";
import type { ClientSocket } from "../hub/local_hub.ts";
import { decodeData, encodeData } from "./protocol.ts";

/** What a retained frame costs beyond its payload, in bytes. */
const FRAME_OVERHEAD = 8;

/** Where an attached session's frames go: the client's connection. */
export interface SessionSink {
  /** Sends `message` as the data frame of `seq`. */
  sendData(seq: number, message: Message): void;
  /** Closes the connection; the code says whether the session ends. */
  close(code: number, reason: string): void;
  /**
   * The session is resumed on another connection: cut this one at once,
   * without touching the session (its `onClose` still runs).
   */
  supersede(): void;
}

/**
 * Where a session is in its life: opened by a hello and not attached yet
 * (its frames are kept), attached to a connection, detached (kept for a
 * resume), or ended.
 */
export type SessionState = "opening" | "attached" | "detached" | "ended";

/** Options of {@linkcode Session}. */
export interface SessionOptions {
  readonly clientId: string;
  readonly token: string;
  /**
   * Bytes of data frames kept for a resume (bytes of binary, UTF-16 units
   * of text, plus 8 a frame); 0 keeps none.
   */
  readonly maxBytes: number;
  /**
   * Copies bytes that are kept (the sender may change its buffer later);
   * a store shares one copy among the sessions a message goes to.
   *
   * @default {(bytes) => bytes.slice()}
   */
  readonly copy?: (bytes: Uint8Array) => Uint8Array;
  /**
   * The seq of the last data frame already issued (a session taken over
   * from another service continues its counter).
   *
   * @default {0}
   */
  readonly seq?: number;
  /**
   * Frames already issued and not yet acknowledged, oldest first, ending
   * with the frame of `seq` (a session taken over brings them).
   *
   * @default {[]}
   */
  readonly retained?: readonly Message[];
  /**
   * Called once when the session, detached, had to drop a frame the client
   * did not receive: it can no longer recover.
   */
  readonly onOverflow: (session: Session) => void;
  /** Called when the hub closes a session that has no connection. */
  readonly onClose: (session: Session) => void;
}

/**
 * A client's session, and the {@linkcode ClientSocket} the hub sends to
 * for it.
 */
export class Session implements ClientSocket {
  readonly clientId: string;
  /** The only valid token; a new one is issued on every welcome. */
  token: string;
  readonly #maxBytes: number;
  readonly #onOverflow: (session: Session) => void;
  readonly #onClose: (session: Session) => void;
  readonly #copy: (bytes: Uint8Array) => Uint8Array;
  #seq: number;
  /**
   * Retained messages (unframed) from #head on, with their sizes; their
   * seqs are contiguous, up to #seq.
   */
  #frames: Message[] = [];
  #sizes: number[] = [];
  #head = 0;
  #bytes = 0;
  #sink: SessionSink | undefined;
  #state: SessionState = "opening";
  /** The window timer while detached. */
  timer: ReturnType<typeof setTimeout> | undefined;
  /**
   * Settles when the hooks of the last connection of this session are
   * done (its onClose ran): the next connection's onConnect waits for it.
   */
  hooksDone: Promise<void> | undefined;

  constructor(options: SessionOptions) {
    this.clientId = options.clientId;
    this.token = options.token;
    this.#maxBytes = options.maxBytes;
    this.#onOverflow = options.onOverflow;
    this.#onClose = options.onClose;
    this.#copy = options.copy ?? copyBytes;
    const retained = options.retained ?? [];
    this.#seq = (options.seq ?? 0) - retained.length;
    for (const frame of retained) {
      const data = decodeData(frame);
      if (data === undefined || data.seq !== this.#seq + 1) {
        throw new TypeError(
          `Cannot start a session with retained frames: frame ${
            this.#seq + 1
          } is not a data frame of that seq`,
        );
      }
      this.#seq++;
      this.#keep(data.message);
    }
  }

  /** The seq of the last data frame issued. */
  get seq(): number {
    return this.#seq;
  }

  /** The seq of the oldest retained frame; `seq + 1` when none is. */
  get firstRetained(): number {
    return this.#seq - (this.#frames.length - this.#head) + 1;
  }

  /** Bytes of the retained frames. */
  get retainedBytes(): number {
    return this.#bytes;
  }

  get state(): SessionState {
    return this.#state;
  }

  /** The connection the session is attached to, if any. */
  get sink(): SessionSink | undefined {
    return this.#sink;
  }

  /** Numbers a message, keeps it for a resume, and sends it if attached. */
  send(message: Message): void {
    if (this.#state === "ended") return;
    const seq = ++this.#seq;
    if (this.#maxBytes > 0) {
      this.#keep(typeof message === "string" ? message : this.#copy(message));
    }
    this.#sink?.sendData(seq, message);
  }

  /**
   * The hub closes the client (the Api closed it): an attached session closes
   * its connection with `code` (1000 ends the session); one without a
   * connection ends.
   */
  close(code: number, reason: string): void {
    if (this.#sink !== undefined) this.#sink.close(code, reason);
    else if (this.#state !== "ended") this.#onClose(this);
  }

  /**
   * Whether every data frame after `seq` is retained (and `seq` is not
   * past the last one issued): a client that received up to `seq` can
   * resume.
   */
  keepsAfter(seq: number): boolean {
    return seq <= this.#seq && seq >= this.firstRetained - 1;
  }

  /**
   * The retained data frames after `seq` (each framed with its seq),
   * oldest first; undefined when some of them are gone (or `seq` is past
   * the last one issued).
   */
  framesAfter(seq: number): Message[] | undefined {
    if (!this.keepsAfter(seq)) return undefined;
    const from = this.#head + (seq - this.firstRetained + 1);
    const frames: Message[] = [];
    for (let i = from, s = seq + 1; i < this.#frames.length; i++, s++) {
      frames.push(encodeData(s, this.#frames[i]!));
    }
    return frames;
  }

  /** Forgets the retained frames up to `seq`: the client has them. */
  ack(seq: number): void {
    const drop = Math.min(seq, this.#seq) - this.firstRetained + 1;
    for (let i = 0; i < drop; i++) this.#drop();
    this.#compact();
  }

  /**
   * Attaches the session to a connection whose client received every data
   * frame up to `seq` (checked with {@linkcode framesAfter}): the frames
   * after it are sent to `sink` at once, then live ones.
   */
  attach(sink: SessionSink, seq: number): void {
    const valid = this.keepsAfter(seq);
    this.ack(seq);
    this.#state = "attached";
    this.#sink = sink;
    if (!valid) return;
    for (let i = this.#head, s = seq + 1; i < this.#frames.length; i++, s++) {
      sink.sendData(s, this.#frames[i]!);
    }
  }

  /** Its connection is gone: frames are kept until it comes back. */
  detach(): void {
    if (this.#state === "ended") return;
    this.#state = "detached";
    this.#sink = undefined;
  }

  /** The session is over: nothing more is kept or sent. */
  end(): void {
    this.#state = "ended";
    this.#sink = undefined;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.#frames = [];
    this.#sizes = [];
    this.#head = 0;
    this.#bytes = 0;
  }

  #keep(message: Message): void {
    const size = FRAME_OVERHEAD +
      (typeof message === "string" ? message.length : message.byteLength);
    this.#frames.push(message);
    this.#sizes.push(size);
    this.#bytes += size;
    if (this.#bytes <= this.#maxBytes) return;
    while (this.#bytes > this.#maxBytes) this.#drop();
    this.#compact();
    // Attached, the client is likely to have the dropped frames already
    // (it acknowledges every second); detached, it certainly has not.
    if (this.#state !== "attached") this.#onOverflow(this);
  }

  #drop(): void {
    this.#bytes -= this.#sizes[this.#head]!;
    this.#frames[this.#head] = "";
    this.#head++;
  }

  #compact(): void {
    const head = this.#head;
    if (head === this.#frames.length) {
      this.#frames = [];
      this.#sizes = [];
      this.#head = 0;
    } else if (head > 256 && head * 2 > this.#frames.length) {
      this.#frames = this.#frames.slice(head);
      this.#sizes = this.#sizes.slice(head);
      this.#head = 0;
    }
  }
}

function copyBytes(bytes: Uint8Array): Uint8Array {
  return bytes.slice();
}
