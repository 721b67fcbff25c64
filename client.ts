/**
 * The client library of the `wsgate.v1` protocol, for browsers and Deno,
 * with no dependencies: {@linkcode connect} opens a {@linkcode GatewayClient}
 * that reconnects by itself (capped, jittered exponential backoff, moving to
 * the next URL when one fails), detects a dead connection with its own
 * heartbeat, resumes its session (the service replays what it missed,
 * exactly once, in order) and holds what `send` is given while it
 * reconnects, up to a bound.
 *
 * A browser page imports the same code as `client.js` (built from this file
 * by `deno task build:client`, no build step on the page's side).
 *
 * @example Connecting, receiving, sending, closing
 * ```ts ignore
 * import { connect } from "./client.ts";
 *
 * const client = connect(["wss://a.example/", "wss://b.example/"]);
 * client.addEventListener("open", (e) => {
 *   console.log(e.detail.clientId, e.detail.recovered);
 * });
 * client.addEventListener("message", (e) => console.log(e.data));
 * client.addEventListener("close", (e) => {
 *   console.log(e.detail.code, e.detail.reconnecting);
 * });
 * client.send("hello");
 * client.close(); // ends the session for good
 * ```
 *
 * @module
 */

/** The WebSocket subprotocol the client offers and the service selects. */
const PROTOCOL = "wsgate.v1";

/**
 * Close codes after which the client does not reconnect, besides
 * 4000-4499: the service ended the session (1000) or said that coming back
 * would not help (protocol error, unsupported or invalid data, policy,
 * message too big).
 */
const TERMINAL_CODES: ReadonlySet<number> = new Set([
  1000,
  1002,
  1003,
  1007,
  1008,
  1009,
]);

/** Service restart: reconnect at once, to the next URL first. */
const SERVICE_RESTART = 1012;

/**
 * How long a connection must have stayed open for the backoff to start
 * again from `minDelayMs` when it breaks: a service that welcomes and then
 * drops every connection is not hammered.
 */
const STABLE_MS = 5000;

/** What the client closes its socket with when it drops it (not for good). */
const DROP_TIMEOUT = 3008;
const DROP_PROTOCOL = 3002;

/**
 * Options of {@linkcode connect}. Every time is in milliseconds.
 *
 * @example Faster reconnects and heartbeats, a smaller send buffer
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ClientOptions } from "./client.ts";
 *
 * const options: ClientOptions = {
 *   minDelayMs: 100,
 *   maxDelayMs: 2000,
 *   pingIntervalMs: 5000,
 *   pongTimeoutMs: 2000,
 *   maxBufferedMessages: 100,
 * };
 * assert.equal(options.maxBufferedBytes, undefined); // 1 MiB by default
 * ```
 */
export interface ClientOptions {
  /**
   * The shortest wait before a reconnect attempt. After n failures in a
   * row (n = 0, 1, ...; a connection that broke within 5 s of its welcome
   * counts as one), the client waits a random time between half and all of
   * `min(maxDelayMs, minDelayMs * 2 ** n)`, and never less than
   * `minDelayMs` (the first retry waits exactly `minDelayMs`).
   *
   * @default {250}
   */
  minDelayMs?: number;
  /**
   * The longest wait before a reconnect attempt.
   *
   * @default {10000}
   */
  maxDelayMs?: number;
  /**
   * How long one attempt may take, from opening the socket to the
   * service's welcome; past it the attempt counts as failed and the next
   * URL is tried.
   *
   * @default {10000}
   */
  connectTimeoutMs?: number;
  /**
   * How often the client sends a `ping` (which also acknowledges what it
   * received).
   *
   * @default {20000}
   */
  pingIntervalMs?: number;
  /**
   * How long after a ping the client waits for any frame; when none comes,
   * it drops the socket without waiting for a close handshake and
   * reconnects.
   *
   * @default {10000}
   */
  pongTimeoutMs?: number;
  /**
   * Acknowledge at once when this many data frames are unacknowledged.
   *
   * @default {64}
   */
  ackFrames?: number;
  /**
   * Acknowledge this long after the first unacknowledged data frame.
   *
   * @default {1000}
   */
  ackDelayMs?: number;
  /**
   * The most messages `send` holds while the client is not connected; past
   * it, `send` throws a {@linkcode ClientError} with code `buffer_full` and
   * holds nothing of that message.
   *
   * @default {1000}
   */
  maxBufferedMessages?: number;
  /**
   * The most bytes (UTF-8 for text) `send` holds while the client is not
   * connected; past it, `send` throws a {@linkcode ClientError} with code
   * `buffer_full`.
   *
   * @default {1048576}
   */
  maxBufferedBytes?: number;
}

/**
 * Where a {@linkcode GatewayClient} is: `connecting` until its first
 * welcome, `open` while connected, `reconnecting` while it tries to come
 * back, `closed` for good (after `close()` or a close code that means "do
 * not come back").
 *
 * @example Waiting until a client is connected
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ClientState } from "./client.ts";
 *
 * const state: ClientState = "reconnecting";
 * assert.notEqual(state, "open");
 * ```
 */
export type ClientState = "connecting" | "open" | "reconnecting" | "closed";

/**
 * The `detail` of an `open` event: the clientId the service gave, and
 * whether the session was recovered (everything missed is replayed after
 * this event) or is fresh (no uid, groups or info; nothing replayed).
 *
 * @example Telling a recovered session from a fresh one
 * ```ts
 * import assert from "node:assert/strict";
 * import type { OpenDetail } from "./client.ts";
 *
 * const detail: OpenDetail = { clientId: "c1", recovered: false };
 * assert.equal(detail.recovered ? "resumed" : "fresh", "fresh");
 * ```
 */
export interface OpenDetail {
  /** The clientId of this connection (new after a takeover). */
  readonly clientId: string;
  /** Whether the service restored the session and replays what was missed. */
  readonly recovered: boolean;
}

/**
 * The `detail` of a `close` event: the close code and reason, and whether
 * the client reconnects by itself.
 *
 * @example Showing a banner only when the client gives up
 * ```ts
 * import assert from "node:assert/strict";
 * import type { CloseDetail } from "./client.ts";
 *
 * const detail: CloseDetail = { code: 1008, reason: "policy", reconnecting: false };
 * assert.equal(detail.reconnecting ? "" : "disconnected", "disconnected");
 * ```
 */
export interface CloseDetail {
  /** The close code (1006 when the connection ended without one). */
  readonly code: number;
  /** The close reason, or what the client saw go wrong. */
  readonly reason: string;
  /** Whether the client reconnects by itself. */
  readonly reconnecting: boolean;
}

/**
 * The events of a {@linkcode GatewayClient}, by name.
 *
 * @example Typing a listener
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ClientEventMap } from "./client.ts";
 *
 * function onMessage(event: ClientEventMap["message"]): string {
 *   return typeof event.data === "string" ? event.data : `${event.data.length} bytes`;
 * }
 * assert.equal(onMessage(new MessageEvent("message", { data: "hi" })), "hi");
 * ```
 */
export interface ClientEventMap {
  /** A connection was established (first, or again after a reconnect). */
  open: CustomEvent<OpenDetail>;
  /** A message from the service: a string for text, bytes for binary. */
  message: MessageEvent<string | Uint8Array>;
  /** A connection ended; `detail.reconnecting` says whether for good. */
  close: CustomEvent<CloseDetail>;
}

/**
 * What went wrong in a call of a {@linkcode GatewayClient}:
 *
 * - `buffer_full`: `send` was called while the client is not connected and
 *   its buffer holds `maxBufferedMessages` or `maxBufferedBytes` already.
 *   Drop the message, or wait for `open` and send it again.
 * - `closed`: `send` was called after the client closed for good.
 *
 * @example Dropping what does not fit while reconnecting
 * ```ts
 * import assert from "node:assert/strict";
 * import { ClientError } from "./client.ts";
 *
 * const error = new ClientError("buffer_full", "Cannot hold the message: 1000 messages are held already");
 * assert.ok(error instanceof Error);
 * assert.equal(error.code, "buffer_full");
 * ```
 */
export class ClientError extends Error {
  /** What went wrong. */
  readonly code: "buffer_full" | "closed";

  /**
   * Makes an error with a code and a message that says what to do.
   *
   * @param code What went wrong.
   * @param message What went wrong and what to do about it.
   */
  constructor(code: "buffer_full" | "closed", message: string) {
    super(message);
    this.name = "ClientError";
    this.code = code;
  }
}

/** A message held while the client is not connected. */
interface Held {
  readonly message: string | Uint8Array;
  readonly bytes: number;
}

/** The settings of a client, every default filled in. */
type Settings = Readonly<Required<ClientOptions>>;

/**
 * A client of the `wsgate.v1` protocol: one logical connection that
 * survives network loss and service restarts. Made by {@linkcode connect}.
 *
 * Events: `open` ({@linkcode OpenDetail}), `message` (a `MessageEvent`
 * whose `data` is a string or a `Uint8Array`), `close`
 * ({@linkcode CloseDetail}).
 *
 * @example A client that logs what it gets
 * ```ts ignore
 * import { connect, type GatewayClient } from "./client.ts";
 *
 * const client: GatewayClient = connect("ws://127.0.0.1:9201/");
 * client.addEventListener("message", (e) => console.log(e.data));
 * ```
 */
export class GatewayClient extends EventTarget {
  readonly #urls: readonly string[];
  readonly #settings: Settings;
  #state: ClientState = "connecting";
  #socket: WebSocket | undefined;
  /** The URL the next attempt uses, as an index into #urls. */
  #next = 0;
  /** The URL of the current or last attempt. */
  #url: string;
  /** Failed attempts (and short-lived connections) in a row. */
  #failures = 0;
  /** When the current connection was welcomed (performance.now()). */
  #openedAt = 0;
  #clientId = "";
  #recovered = false;
  #token: string | undefined;
  /** The seq of the last data frame received. */
  #seq = 0;
  /** Data frames received and not yet acknowledged. */
  #unacked = 0;
  #held: Held[] = [];
  #heldBytes = 0;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  #pingTimer: ReturnType<typeof setInterval> | undefined;
  #pongTimer: ReturnType<typeof setTimeout> | undefined;
  #ackTimer: ReturnType<typeof setTimeout> | undefined;

  /**
   * Starts connecting to the first of `urls`; use {@linkcode connect}.
   *
   * @param urls The service URLs, tried in turn.
   * @param settings The options, every default filled in.
   */
  constructor(urls: readonly string[], settings: Settings) {
    super();
    this.#urls = urls;
    this.#settings = settings;
    this.#url = urls[0]!;
    this.#open();
  }

  /** The clientId of the current or last connection ("" before the first). */
  get clientId(): string {
    return this.#clientId;
  }

  /** Whether the current or last connection recovered its session. */
  get recovered(): boolean {
    return this.#recovered;
  }

  /** Where the client is; see {@linkcode ClientState}. */
  get state(): ClientState {
    return this.#state;
  }

  /** The URL of the current or last connection attempt. */
  get url(): string {
    return this.#url;
  }

  /** How many messages `send` holds until the client is connected. */
  get bufferedMessages(): number {
    return this.#held.length;
  }

  /** How many bytes `send` holds until the client is connected. */
  get bufferedBytes(): number {
    return this.#heldBytes;
  }

  /**
   * Adds a listener for `open`, `message` or `close`.
   *
   * @param type The event's name.
   * @param listener Called with the event.
   * @param options As for any `EventTarget`.
   */
  override addEventListener<K extends keyof ClientEventMap>(
    type: K,
    listener: (this: GatewayClient, event: ClientEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /**
   * Adds a listener for any event name.
   *
   * @param type The event's name.
   * @param listener Called with the event.
   * @param options As for any `EventTarget`.
   */
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void {
    super.addEventListener(type, listener, options);
  }

  /**
   * Removes a listener added by `addEventListener`.
   *
   * @param type The event's name.
   * @param listener The listener to remove.
   * @param options As for any `EventTarget`.
   */
  override removeEventListener<K extends keyof ClientEventMap>(
    type: K,
    listener: (this: GatewayClient, event: ClientEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  /**
   * Removes a listener for any event name.
   *
   * @param type The event's name.
   * @param listener The listener to remove.
   * @param options As for any `EventTarget`.
   */
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void {
    super.removeEventListener(type, listener, options);
  }

  /**
   * Sends a text (string) or binary (`Uint8Array`) message. While the
   * client is not connected, the message is held and sent, in order, right
   * after the next welcome, before the `open` event.
   *
   * What was handed to a socket that then breaks may be lost: the protocol
   * acknowledges what the service sends, not what it receives.
   *
   * @param message The message, as the service's `onMessage` gets it.
   * @throws {ClientError} `buffer_full` when the client is not connected
   * and holds `maxBufferedMessages` messages or `maxBufferedBytes` bytes
   * with this one; `closed` after the client closed for good.
   */
  send(message: string | Uint8Array): void {
    if (typeof message !== "string" && !(message instanceof Uint8Array)) {
      throw new TypeError(
        `Cannot send ${typeof message}: send a string or a Uint8Array`,
      );
    }
    if (this.#state === "closed") {
      throw new ClientError(
        "closed",
        "Cannot send: the client is closed; connect() a new one",
      );
    }
    const socket = this.#socket;
    if (
      this.#state === "open" && socket !== undefined &&
      socket.readyState === WebSocket.OPEN
    ) {
      this.#write(socket, message);
      return;
    }
    const bytes = typeof message === "string"
      ? utf8Length(message)
      : message.byteLength;
    const { maxBufferedMessages, maxBufferedBytes } = this.#settings;
    if (this.#held.length >= maxBufferedMessages) {
      throw new ClientError(
        "buffer_full",
        `Cannot hold the message until the client reconnects: ${this.#held.length} messages are held already (maxBufferedMessages); drop it or send it again after "open"`,
      );
    }
    if (this.#heldBytes + bytes > maxBufferedBytes) {
      throw new ClientError(
        "buffer_full",
        `Cannot hold the message of ${bytes} bytes until the client reconnects: ${this.#heldBytes} bytes are held already and maxBufferedBytes is ${maxBufferedBytes}; drop it or send it again after "open"`,
      );
    }
    this.#held.push({ message, bytes });
    this.#heldBytes += bytes;
  }

  /**
   * Ends the session for good: sends close code 1000 (the service forgets
   * the session at once), drops what `send` holds, and never reconnects.
   * The `close` event (code 1000, `reconnecting: false`) is dispatched
   * before this returns. Does nothing when already closed.
   */
  close(): void {
    if (this.#state === "closed") return;
    const socket = this.#socket;
    this.#detach();
    if (socket !== undefined) closeQuietly(socket, 1000, "");
    this.#end(1000, "");
  }

  /** Starts a connection attempt to the URL at #next. */
  #open(): void {
    this.#retryTimer = undefined;
    const url = this.#urls[this.#next]!;
    this.#url = url;
    let socket: WebSocket;
    try {
      socket = new WebSocket(url, PROTOCOL);
    } catch (error) {
      // A malformed URL: as good as a refused connection, try the next one.
      this.#lost(1006, `Cannot connect to ${url}: ${messageOf(error)}`, false);
      return;
    }
    socket.binaryType = "arraybuffer";
    this.#socket = socket;
    let welcomed = false;
    this.#connectTimer = setTimeout(() => {
      this.#drop(
        DROP_TIMEOUT,
        `no welcome from ${url} within ${this.#settings.connectTimeoutMs} ms`,
      );
    }, this.#settings.connectTimeoutMs);
    socket.onopen = () => {
      if (socket.protocol !== PROTOCOL) {
        this.#drop(
          DROP_PROTOCOL,
          `${url} did not select the ${PROTOCOL} subprotocol`,
        );
        return;
      }
      const hello = this.#token === undefined
        ? { type: "hello" }
        : { type: "hello", token: this.#token, seq: this.#seq };
      socket.send(JSON.stringify(hello));
    };
    socket.onmessage = (event: MessageEvent) => {
      clearTimeout(this.#pongTimer);
      this.#pongTimer = undefined;
      if (!welcomed) {
        welcomed = this.#welcome(socket, event.data);
        return;
      }
      this.#receive(event.data);
    };
    socket.onclose = (event: CloseEvent) => {
      this.#detach();
      // Deno says 0 where browsers say 1006: no close frame came.
      const code = event.code >= 1000 ? event.code : 1006;
      this.#lost(code, event.reason, welcomed);
    };
  }

  /** Handles the first frame; returns whether it was a welcome. */
  #welcome(socket: WebSocket, data: unknown): boolean {
    const welcome = typeof data === "string" && data.startsWith("{")
      ? parseJson(data)
      : undefined;
    if (
      welcome?.type !== "welcome" || typeof welcome.clientId !== "string" ||
      typeof welcome.token !== "string" || typeof welcome.seq !== "number"
    ) {
      this.#drop(DROP_PROTOCOL, "the first frame was not a welcome");
      return false;
    }
    clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
    this.#clientId = welcome.clientId;
    this.#token = welcome.token;
    this.#recovered = welcome.recovered === true;
    // Defensive: never deliver again what was delivered already.
    this.#seq = this.#recovered
      ? Math.max(this.#seq, welcome.seq)
      : welcome.seq;
    this.#unacked = 0;
    this.#openedAt = performance.now();
    this.#state = "open";
    this.#pingTimer = setInterval(
      () => this.#ping(socket),
      this.#settings.pingIntervalMs,
    );
    // What was held goes first, before anything an open listener sends.
    const held = this.#held;
    this.#held = [];
    this.#heldBytes = 0;
    for (const { message } of held) this.#write(socket, message);
    this.dispatchEvent(
      new CustomEvent<OpenDetail>("open", {
        detail: { clientId: this.#clientId, recovered: this.#recovered },
      }),
    );
    return true;
  }

  /** Handles a frame after the welcome. */
  #receive(data: unknown): void {
    let seq: number;
    let payload: string | Uint8Array;
    if (typeof data === "string") {
      if (data.startsWith("{")) return; // pong, or control this client ignores
      const colon = data.indexOf(":");
      seq = colon > 0 ? parseSeq(data.slice(0, colon)) : NaN;
      payload = data.slice(colon + 1);
    } else if (data instanceof ArrayBuffer) {
      const bytes = new Uint8Array(data);
      const [value, length] = readVarint(bytes);
      seq = value;
      payload = bytes.subarray(length);
    } else {
      seq = NaN;
      payload = "";
    }
    if (Number.isNaN(seq)) {
      this.#drop(DROP_PROTOCOL, "a data frame without a valid seq");
      return;
    }
    if (seq <= this.#seq) return; // delivered already
    this.#seq = seq;
    this.#unacked++;
    if (this.#unacked >= this.#settings.ackFrames) {
      this.#ack();
    } else {
      this.#ackTimer ??= setTimeout(
        () => this.#ack(),
        this.#settings.ackDelayMs,
      );
    }
    this.dispatchEvent(new MessageEvent("message", { data: payload }));
  }

  #ack(): void {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    if (this.#unacked === 0 || this.#socket === undefined) return;
    this.#unacked = 0;
    this.#control({ type: "ack", seq: this.#seq });
  }

  #ping(socket: WebSocket): void {
    if (this.#socket !== socket) return;
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    this.#unacked = 0; // a ping acknowledges too
    this.#control({ type: "ping", seq: this.#seq });
    this.#pongTimer ??= setTimeout(() => {
      this.#drop(
        DROP_TIMEOUT,
        `heartbeat: nothing received within ${this.#settings.pongTimeoutMs} ms of a ping`,
      );
    }, this.#settings.pongTimeoutMs);
  }

  #control(frame: Record<string, unknown>): void {
    const socket = this.#socket;
    if (socket?.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(frame));
    }
  }

  #write(socket: WebSocket, message: string | Uint8Array): void {
    socket.send(typeof message === "string" ? `:${message}` : message);
  }

  /**
   * Gives up on the current socket at once (no waiting for a close
   * handshake that may never come) and goes on as if it had closed.
   */
  #drop(code: number, reason: string): void {
    const socket = this.#socket;
    if (socket === undefined) return;
    const welcomed = this.#state === "open";
    this.#detach();
    closeQuietly(socket, code, "");
    this.#lost(code, reason, welcomed);
  }

  /** Forgets the current socket and its timers. */
  #detach(): void {
    const socket = this.#socket;
    if (socket !== undefined) {
      socket.onopen = null;
      socket.onmessage = null;
      socket.onclose = null;
    }
    this.#socket = undefined;
    for (const timer of [this.#connectTimer, this.#pongTimer, this.#ackTimer]) {
      clearTimeout(timer);
    }
    clearInterval(this.#pingTimer);
    this.#connectTimer = undefined;
    this.#pongTimer = undefined;
    this.#ackTimer = undefined;
    this.#pingTimer = undefined;
  }

  /**
   * A connection or attempt ended: stops for good on a terminal code,
   * otherwise schedules the next attempt.
   */
  #lost(code: number, reason: string, welcomed: boolean): void {
    if (this.#state === "closed") return;
    if (TERMINAL_CODES.has(code) || (code >= 4000 && code <= 4499)) {
      this.#end(code, reason);
      return;
    }
    let delay: number;
    if (code === SERVICE_RESTART) {
      // The service is going away on purpose: to the next one, at once.
      this.#advance();
      delay = Math.random() * this.#settings.minDelayMs;
    } else if (welcomed) {
      // A connection that worked: the same URL first (a network blip).
      if (performance.now() - this.#openedAt >= STABLE_MS) this.#failures = 0;
      delay = this.#backoff();
    } else {
      this.#advance();
      delay = this.#backoff();
    }
    this.#state = this.#clientId === "" ? "connecting" : "reconnecting";
    if (welcomed) {
      this.dispatchEvent(
        new CustomEvent<CloseDetail>("close", {
          detail: { code, reason, reconnecting: true },
        }),
      );
      // A listener may have closed the client.
      if ((this.#state as ClientState) === "closed") return;
    }
    this.#retryTimer = setTimeout(() => this.#open(), delay);
  }

  /** The wait before the next attempt; counts one more failure. */
  #backoff(): number {
    const { minDelayMs, maxDelayMs } = this.#settings;
    const cap = Math.min(maxDelayMs, minDelayMs * 2 ** this.#failures);
    this.#failures++;
    return Math.max(minDelayMs, cap * (0.5 + Math.random() / 2));
  }

  #advance(): void {
    this.#next = (this.#next + 1) % this.#urls.length;
  }

  /** Closes for good and says so. */
  #end(code: number, reason: string): void {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    this.#state = "closed";
    this.#token = undefined;
    this.#held = [];
    this.#heldBytes = 0;
    this.dispatchEvent(
      new CustomEvent<CloseDetail>("close", {
        detail: { code, reason, reconnecting: false },
      }),
    );
  }
}

/**
 * Connects to a `wsgate.v1` service, or to the first of several that serve
 * the same cluster, and keeps connected until `close()` or a close code
 * that means "do not come back": 1000 from the service (it closed the client),
 * 1002, 1003, 1007, 1008, 1009 and 4000-4499 (4000 + HTTP status for a
 * refusal by `onHandshake`, e.g. 4403). After 1012 (service restart) it
 * reconnects at once to the next URL; after any other end (network loss,
 * heartbeat timeout, 1001, 1006, 1011, ...) with backoff, and resumes its
 * session either way.
 *
 * @param url A `ws:` or `wss:` URL, or several tried in turn.
 * @param options Backoff, heartbeat, acknowledgement and buffer settings.
 * @returns The client, already connecting.
 * @throws {TypeError} When no URL is given.
 * @throws {RangeError} When an option is not a positive number.
 *
 * @example Connecting to a service, then closing for good
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, type OpenDetail } from "@wsgate/gateway/client";
 * import { startRegister, startService } from "@wsgate/gateway";
 *
 * await using register = await startRegister({ hostname: "127.0.0.1", port: 0 });
 * const connected: string[] = [];
 * await using service = await startService({
 *   onConnect(clientId) {
 *     connected.push(clientId);
 *   },
 * }, {
 *   register: `127.0.0.1:${register.port}`,
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   rpcPort: 0,
 * });
 * const client = connect([`ws://127.0.0.1:${service.port}/`]);
 * const open = await new Promise<OpenDetail>((resolve) => {
 *   client.addEventListener("open", (e) => resolve(e.detail), { once: true });
 * });
 * assert.deepEqual(connected, [open.clientId]);
 * assert.equal(open.recovered, false);
 * client.close();
 * assert.equal(client.state, "closed");
 * ```
 */
export function connect(
  url: string | readonly string[],
  options: ClientOptions = {},
): GatewayClient {
  const urls = typeof url === "string" ? [url] : [...url];
  if (urls.length === 0 || urls.some((u) => typeof u !== "string")) {
    throw new TypeError(
      "Cannot connect: give a WebSocket URL or a non-empty array of them",
    );
  }
  const {
    minDelayMs = 250,
    maxDelayMs = 10_000,
    connectTimeoutMs = 10_000,
    pingIntervalMs = 20_000,
    pongTimeoutMs = 10_000,
    ackFrames = 64,
    ackDelayMs = 1000,
    maxBufferedMessages = 1000,
    maxBufferedBytes = 1024 * 1024,
  } = options;
  const settings: Settings = {
    minDelayMs,
    maxDelayMs,
    connectTimeoutMs,
    pingIntervalMs,
    pongTimeoutMs,
    ackFrames,
    ackDelayMs,
    maxBufferedMessages,
    maxBufferedBytes,
  };
  for (const [name, value] of Object.entries(settings)) {
    if (typeof value !== "number" || !(value > 0) || value === Infinity) {
      throw new RangeError(
        `Cannot connect: '${name}' must be a positive number: current value is ${value}`,
      );
    }
  }
  if (maxDelayMs < minDelayMs) {
    throw new RangeError(
      `Cannot connect: 'maxDelayMs' must be at least 'minDelayMs' (${minDelayMs}): current value is ${maxDelayMs}`,
    );
  }
  return new GatewayClient(urls, settings);
}

/** The unsigned LEB128 varint at the start of `bytes`, and its length. */
function readVarint(bytes: Uint8Array): [value: number, length: number] {
  let value = 0;
  for (let i = 0; i < bytes.length && i < 8; i++) {
    const byte = bytes[i]!;
    value += (byte & 0x7f) * 2 ** (7 * i);
    if (byte < 0x80) return [value, i + 1];
  }
  return [NaN, 0];
}

/** A seq in decimal without leading zeros, or NaN. */
function parseSeq(text: string): number {
  return /^[1-9][0-9]{0,15}$/.test(text) ? Number(text) : NaN;
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null
      ? value as Record<string, unknown>
      : undefined;
  } catch {
    return undefined;
  }
}

/** The length of `text` in UTF-8, without encoding it. */
function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff) {
      bytes += 4; // a surrogate pair: one code point of 4 bytes
      i++;
    } else bytes += 3;
  }
  return bytes;
}

function closeQuietly(socket: WebSocket, code: number, reason: string): void {
  try {
    socket.close(code, reason);
  } catch {
    // Closed already.
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
