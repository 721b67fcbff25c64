// One client's WebSocket: the ClientSocket that the hub sends through, the
// limits on what goes out (buffered bytes) and comes in (message size), and
// the in-order, never-overlapping calls of the application's hooks.

import type { ClientInfo, Message } from "../../api.ts";
import type {
  Application,
  ConnectContext,
  Context,
} from "../../application.ts";
import type { ClientSocket, LocalHub } from "../hub/local_hub.ts";
import { errorText, type Logger } from "../base/logger.ts";
import type { ServiceMetrics } from "../ops/metrics.ts";
import {
  isLongerThan,
  maxMessageBytes,
  messageLength,
} from "../api/message_size.ts";

/** The service closes: every client is closed with this. */
export const GOING_AWAY = 1001;
/** A client let more than `maxBufferedBytes` wait: closed with this. */
export const SLOW_CONSUMER = 1008;
/** A client sent more than `maxMessageBytes` in one message. */
export const MESSAGE_TOO_BIG = 1009;

const OPEN = 1;
/** The most a WebSocket frame header takes (server frames are unmasked). */
const WEBSOCKET_HEADER_BYTES = 10;

// The life of a client: connecting (upgraded, not open yet), open (in the
// hub), gone (out of the hub; its socket may still be closing).
const CONNECTING = 0;
const OPENED = 1;
const GONE = 2;

type HookEvent =
  | { readonly kind: "connect"; readonly ctx: ConnectContext }
  | { readonly kind: "message"; readonly message: Message }
  | { readonly kind: "close" };

const CLOSE_EVENT: HookEvent = { kind: "close" };

/** What a client connection works with. */
export interface ClientConnectionOptions {
  readonly app: Application;
  readonly ctx: Context;
  readonly hub: LocalHub;
  readonly logger: Logger;
  /** The service's counters. */
  readonly metrics: ServiceMetrics;
  /**
   * A client that has more than this many bytes waiting in its socket when
   * a message is sent to it is closed instead.
   */
  readonly maxBufferedBytes: number;
  /** A message longer than this closes the client with 1009. */
  readonly maxMessageBytes: number;
  /**
   * Called once when nothing more will happen with the client: its socket
   * closed (or was abandoned) and its last hook settled.
   */
  readonly onFinished: (client: ClientConnection) => void;
}

/**
 * A client's WebSocket from the upgrade on. It joins the hub when the
 * socket opens and leaves it the moment it is gone: when the socket closes,
 * or when the service closes it (then without waiting for the close
 * handshake, which a dead or stuck client never completes).
 */
export class ClientConnection implements ClientSocket {
  readonly id: string;
  readonly #socket: WebSocket;
  readonly #options: ClientConnectionOptions;
  readonly #maxBufferedBytes: number;
  readonly #metrics: ServiceMetrics;
  #state: number = CONNECTING;
  #socketDone = false;
  #finished = false;
  #checking = false;
  /**
   * `bufferedAmount` when last read, and at most how many bytes were
   * queued since: while their sum is within `maxBufferedBytes` the socket
   * cannot be over it (but for Deno's own small control frames), and
   * reading `bufferedAmount`, a call into Deno, is skipped.
   */
  #buffered = 0;
  #queuedSince = 0;
  #busy = false;
  #backlog: HookEvent[] | undefined;

  constructor(
    id: string,
    socket: WebSocket,
    request: Request,
    info: ClientInfo,
    options: ClientConnectionOptions,
  ) {
    this.id = id;
    this.#socket = socket;
    this.#options = options;
    this.#maxBufferedBytes = options.maxBufferedBytes;
    this.#metrics = options.metrics;
    socket.binaryType = "arraybuffer";
    socket.onopen = () => this.#open(request, info);
    socket.onmessage = (event) => this.#receive(event.data);
    // Deno may fire "close" twice for one socket; #closed() is idempotent.
    socket.onclose = (event) => this.#closed(event.code);
    socket.onerror = () => {
      // A close event follows.
    };
  }

  send(message: Message): void {
    const socket = this.#socket;
    if (socket.readyState !== OPEN) return;
    try {
      socket.send(message);
      this.#metrics.messagesOut++;
      this.#metrics.bytesOut += messageLength(message);
    } catch (error) {
      this.#options.logger.debug("send failed", {
        clientId: this.id,
        error: String(error),
      });
      return;
    }
    this.#queuedSince += WEBSOCKET_HEADER_BYTES + maxMessageBytes(message);
    if (this.#buffered + this.#queuedSince <= this.#maxBufferedBytes) return;
    this.#buffered = socket.bufferedAmount;
    this.#queuedSince = 0;
    if (this.#buffered > this.#maxBufferedBytes && !this.#checking) {
      this.#checkSoon();
    }
  }

  close(code: number, reason: string): void {
    try {
      this.#socket.close(code, reason);
    } catch {
      // Already closing.
    }
    this.#gone(code);
  }

  #open(request: Request, info: ClientInfo): void {
    if (this.#state !== CONNECTING) return;
    this.#state = OPENED;
    this.#metrics.connectionsOpened++;
    this.#options.hub.add(this.id, this, info);
    this.#options.logger.debug("client connected", { clientId: this.id });
    this.#dispatch({
      kind: "connect",
      ctx: { ...this.#options.ctx, request },
    });
  }

  #receive(data: unknown): void {
    if (this.#state !== OPENED) return;
    const message = typeof data === "string"
      ? data
      : new Uint8Array(data as ArrayBuffer);
    this.#metrics.messagesIn++;
    this.#metrics.bytesIn += messageLength(message);
    const max = this.#options.maxMessageBytes;
    if (isLongerThan(message, max)) {
      this.#options.logger.info("closed a client that sent too much", {
        clientId: this.id,
        limit: max,
      });
      this.close(MESSAGE_TOO_BIG, `message too big: the limit is ${max} bytes`);
      return;
    }
    this.#dispatch({ kind: "message", message });
  }

  /**
   * Deno writes to the socket only when the event loop turns, so a burst
   * sent in one go is all in `bufferedAmount` at first. Once the loop has
   * turned, what is still buffered is what the client did not take.
   */
  #checkSoon(): void {
    this.#checking = true;
    setTimeout(() => {
      this.#checking = false;
      const socket = this.#socket;
      this.#buffered = socket.bufferedAmount;
      this.#queuedSince = 0;
      if (
        socket.readyState === OPEN &&
        this.#buffered > this.#maxBufferedBytes
      ) this.#overflow();
    }, 0);
  }

  /**
   * Closes a client that does not read fast enough. The close frame waits
   * behind what is buffered, so the socket may never finish closing: it is
   * abandoned at once rather than waited for.
   */
  #overflow(): void {
    this.#options.logger.info("closed a slow client", {
      clientId: this.id,
      bufferedBytes: this.#socket.bufferedAmount,
      limit: this.#maxBufferedBytes,
    });
    this.#metrics.slowConsumerCloses++;
    this.#socketDone = true;
    this.close(SLOW_CONSUMER, "slow consumer: too much data waiting");
  }

  #closed(code: number): void {
    this.#socketDone = true;
    this.#gone(code);
    this.#maybeFinish();
  }

  /** Leaves the hub and queues onClose, once. */
  #gone(code: number): void {
    if (this.#state === GONE) return;
    const wasOpen = this.#state === OPENED;
    this.#state = GONE;
    if (!wasOpen) return this.#maybeFinish();
    this.#metrics.connectionsClosed++;
    this.#options.hub.remove(this.id);
    this.#options.logger.debug("client closed", { clientId: this.id, code });
    // Queued, not run here: this may be inside a send loop of the hub.
    (this.#backlog ??= []).push(CLOSE_EVENT);
    if (!this.#busy) queueMicrotask(() => this.#pump());
  }

  /** Runs a hook now, or queues it behind the ones still running. */
  #dispatch(event: HookEvent): void {
    if (this.#busy || this.#backlog?.length) {
      (this.#backlog ??= []).push(event);
    } else this.#run(event);
  }

  #pump(): void {
    const backlog = this.#backlog;
    while (!this.#busy && backlog !== undefined && backlog.length > 0) {
      this.#run(backlog.shift()!);
    }
    this.#maybeFinish();
  }

  #run(event: HookEvent): void {
    let result: void | Promise<void>;
    try {
      result = this.#call(event);
    } catch (error) {
      this.#failed(event, error);
      return;
    }
    if (result !== undefined && typeof result.then === "function") {
      this.#busy = true;
      result.then(undefined, (error) => this.#failed(event, error)).then(
        () => {
          this.#busy = false;
          this.#pump();
        },
      );
    }
  }

  #maybeFinish(): void {
    if (
      this.#finished || !this.#socketDone || this.#state !== GONE ||
      this.#busy || (this.#backlog !== undefined && this.#backlog.length > 0)
    ) return;
    this.#finished = true;
    this.#options.onFinished(this);
  }

  #call(event: HookEvent): void | Promise<void> {
    const { app, ctx } = this.#options;
    switch (event.kind) {
      case "connect":
        return app.onConnect?.(this.id, event.ctx);
      case "message":
        return app.onMessage?.(this.id, event.message, ctx);
      case "close":
        return app.onClose?.(this.id, ctx);
    }
  }

  #failed(event: HookEvent, error: unknown): void {
    const hook = event.kind === "connect"
      ? "onConnect"
      : event.kind === "message"
      ? "onMessage"
      : "onClose";
    this.#options.logger.error(`${hook} failed`, {
      clientId: this.id,
      error: errorText(error),
    });
  }
}
