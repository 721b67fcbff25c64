// One client's WebSocket: the ClientSocket that the hub sends through, the
// limits on what goes out (buffered bytes) and comes in (message size, rate,
// messages waiting for the application), and the in-order, never-overlapping
// calls of the application's hooks. A client that speaks `wsgate.v1`
// (internal/session/) is in the hub through its session, from its hello on:
// the session numbers what is sent to it, and outlives a broken connection.

import type { ClientInfo, Message } from "../../api.ts";
import type { ConnectContext, Context, RateLimit } from "../../application.ts";
import type { ClientSocket, LocalHub } from "../hub/local_hub.ts";
import { errorText, type Logger } from "../base/logger.ts";
import type { ServiceMetrics } from "../ops/metrics.ts";
import { messageLength } from "../api/message_size.ts";
import { CLOSE_CODE } from "../websocket/server_socket.ts";
import type { AcceptedSocket } from "../websocket/accepted_socket.ts";
import { TokenBucket } from "./token_bucket.ts";
import type { ApplicationSlot } from "./application_slot.ts";
import type { Opening, SessionStore } from "../session/session_store.ts";
import type { Session, SessionSink } from "../session/session.ts";
import {
  encodeWelcome,
  parseClientFrame,
  PONG_FRAME,
} from "../session/protocol.ts";

/** The service closes: every client is closed with this. */
export const GOING_AWAY = CLOSE_CODE.GOING_AWAY;
/** The service closes: every `wsgate.v1` client is closed with this. */
export const SERVICE_RESTART = 1012;
/** A client let more than `maxBufferedBytes` wait, or sent too fast. */
export const POLICY_VIOLATION = CLOSE_CODE.POLICY;
/** A client sent more than `maxMessageBytes` in one message. */
export const MESSAGE_TOO_BIG = CLOSE_CODE.TOO_BIG;

/** How soon a client over `maxBufferedBytes` that still reads is looked at again. */
const RECHECK_MS = 10;

// The life of a client: connecting (upgraded, not open yet), open (in the
// hub), gone (out of the hub; its socket may still be closing).
const CONNECTING = 0;
const OPENED = 1;
const GONE = 2;
// A `wsgate.v1` client's socket is open, its hello has not come yet (or its
// session is being opened).
const HELLO = 3;

type HookEvent =
  | {
    readonly kind: "connect";
    readonly ctx: ConnectContext;
    /** Settles when the last connection of the session is done with its hooks. */
    readonly after?: Promise<void> | undefined;
  }
  | { readonly kind: "message"; readonly message: Message }
  | { readonly kind: "close" };

const CLOSE_EVENT: HookEvent = { kind: "close" };

/** What a client connection works with. */
export interface ClientConnectionOptions {
  /** The running application: each hook call takes the current one. */
  readonly app: ApplicationSlot;
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
  /** This client's rate limit; undefined for none. */
  readonly rateLimit: RateLimit | undefined;
  /**
   * Messages that may wait for `onMessage`; while this many wait, the
   * socket is paused (see {@linkcode AcceptedSocket.pause}).
   */
  readonly maxQueuedMessages: number;
  /**
   * Called once when nothing more will happen with the client: its socket
   * closed (or was abandoned) and its last hook settled.
   */
  readonly onFinished: (client: ClientConnection) => void;
  /**
   * The service's sessions, for a client that speaks `wsgate.v1`;
   * undefined for a raw client.
   */
  readonly sessions: SessionStore | undefined;
  /** How long a `wsgate.v1` client may take to send its hello. */
  readonly helloTimeoutMs: number;
}

/**
 * A client's WebSocket from the upgrade on. It joins the hub when the
 * socket opens and leaves it the moment it is gone: when the socket closes,
 * or when the service closes it (then without waiting for the close
 * handshake, which a dead or stuck client never completes). Messages it
 * sent that still wait for `onMessage` when the service closes it, or when
 * its connection breaks, are dropped; after a close of its own (a close
 * frame) they are still handed to `onMessage`.
 */
export class ClientConnection implements ClientSocket, SessionSink {
  /** The clientId; a `wsgate.v1` client that resumes takes its old one. */
  id: string;
  readonly #socket: AcceptedSocket;
  readonly #options: ClientConnectionOptions;
  readonly #maxBufferedBytes: number;
  readonly #metrics: ServiceMetrics;
  readonly #bucket: TokenBucket | undefined;
  #state: number = CONNECTING;
  #socketDone = false;
  #finished = false;
  #checking = false;
  #busy = false;
  #paused = false;
  #backlog: HookEvent[] | undefined;
  /** Messages in the backlog. */
  #queued = 0;
  /** A `wsgate.v1` client's upgrade request and info, until its hello. */
  #pendingOpen: [Request, ClientInfo] | undefined;
  /** A `wsgate.v1` client's session, from its hello on. */
  #session: Session | undefined;
  #helloTimer: ReturnType<typeof setTimeout> | undefined;
  /** Messages that came after the hello while its session was opened. */
  #early: Message[] | undefined;
  /** Whether the session moved to a newer connection. */
  #superseded = false;
  /** Settles once this connection's onClose ran (for the session's next). */
  #closeDone: PromiseWithResolvers<void> | undefined;

  constructor(
    id: string,
    socket: AcceptedSocket,
    request: Request,
    info: ClientInfo,
    options: ClientConnectionOptions,
  ) {
    this.id = id;
    this.#socket = socket;
    this.#options = options;
    this.#maxBufferedBytes = options.maxBufferedBytes;
    this.#metrics = options.metrics;
    this.#bucket = options.rateLimit === undefined
      ? undefined
      : new TokenBucket(options.rateLimit);
    socket.listen({
      open: () => this.#open(request, info),
      message: (message) => this.#receive(message),
      close: (code) => this.#closed(code),
      refused: (code, reason) => this.#refused(code, reason),
    });
  }

  send(message: Message): void {
    const socket = this.#socket;
    if (!socket.isOpen) return;
    socket.send(message);
    this.#metrics.messagesOut++;
    this.#metrics.bytesOut += messageLength(message);
    if (socket.bufferedAmount > this.#maxBufferedBytes && !this.#checking) {
      this.#checkSoon();
    }
  }

  /** Sends a `wsgate.v1` data frame: `message` numbered `seq`. */
  sendData(seq: number, message: Message): void {
    const socket = this.#socket;
    if (!socket.isOpen) return;
    socket.sendNumbered(seq, message);
    this.#metrics.messagesOut++;
    this.#metrics.bytesOut += messageLength(message);
    if (socket.bufferedAmount > this.#maxBufferedBytes && !this.#checking) {
      this.#checkSoon();
    }
  }

  close(code: number, reason: string): void {
    this.#socket.close(code, reason);
    this.#gone(code, true);
  }

  /** Whether the client speaks `wsgate.v1`. */
  get speaksV1(): boolean {
    return this.#options.sessions !== undefined;
  }

  /**
   * Its session is resumed on a newer connection: this one is cut off at
   * once and leaves the session alone (its onClose still runs).
   */
  supersede(): void {
    this.#superseded = true;
    this.#socket.terminate(GOING_AWAY, "the session resumed elsewhere");
  }

  #open(request: Request, info: ClientInfo): void {
    if (this.#state !== CONNECTING) return;
    if (this.#options.sessions !== undefined) {
      // Not in the hub before its hello.
      this.#state = HELLO;
      this.#helloTimer = setTimeout(
        () => this.#protocolError("no hello in time"),
        this.#options.helloTimeoutMs,
      );
      this.#pendingOpen = [request, info];
      return;
    }
    this.#state = OPENED;
    this.#metrics.connectionsOpened++;
    this.#options.hub.add(this.id, this, info);
    this.#options.logger.debug("client connected", { clientId: this.id });
    this.#dispatch({
      kind: "connect",
      ctx: { ...this.#options.ctx, request },
    });
  }

  /**
   * A `wsgate.v1` client's first frame: its hello opens (or resumes) its
   * session; anything else closes with 1002.
   */
  #hello(message: Message): void {
    if (this.#early !== undefined) {
      if (this.#early.length >= this.#options.maxQueuedMessages) {
        this.#metrics.rateLimitCloses++;
        this.close(POLICY_VIOLATION, "too many messages before the welcome");
      } else this.#early.push(message);
      return;
    }
    const frame = parseClientFrame(message);
    if (frame.kind !== "hello") {
      this.#protocolError(
        frame.kind === "invalid"
          ? frame.reason
          : "the first frame must be a hello",
      );
      return;
    }
    clearTimeout(this.#helloTimer);
    const opening = this.#options.sessions!.open(
      frame,
      this.id,
      this.#pendingOpen![1],
    );
    if (opening instanceof Promise) {
      this.#early = [];
      opening.then((opened) => this.#welcome(opened));
    } else this.#welcome(opening);
  }

  /**
   * The session is open: the welcome goes out, then what the client missed,
   * then live frames; onConnect runs once the session's last connection is
   * done with its hooks.
   */
  #welcome(opening: Opening): void {
    const early = this.#early;
    this.#early = undefined;
    const { session, recovered, previousClientId, seq } = opening;
    const sessions = this.#options.sessions!;
    if (this.#state !== HELLO) {
      // Gone while its session was being opened: a session taken over is
      // kept for the client's next try; a fresh one it never heard of.
      if (recovered) sessions.detach(session, CLOSE_CODE.ABNORMAL);
      else sessions.release(session);
      return;
    }
    const [request] = this.#pendingOpen!;
    this.#pendingOpen = undefined;
    this.id = session.clientId;
    this.#session = session;
    this.#state = OPENED;
    this.#metrics.connectionsOpened++;
    this.#socket.send(encodeWelcome({
      clientId: session.clientId,
      token: session.token,
      recovered,
      seq,
    }));
    sessions.attach(session, this, seq);
    this.#options.logger.debug("client connected", {
      clientId: this.id,
      recovered,
    });
    const after = session.hooksDone;
    session.hooksDone = undefined;
    this.#dispatch({
      kind: "connect",
      ctx: {
        ...this.#options.ctx,
        request,
        ...(recovered && previousClientId !== undefined
          ? { resumed: { previousClientId } }
          : {}),
      },
      after,
    });
    for (const message of early ?? []) this.#receive(message);
  }

  /** Closes a `wsgate.v1` client that broke the protocol with 1002. */
  #protocolError(reason: string): void {
    this.#metrics.protocolErrorCloses++;
    this.#options.logger.info("closed a client that broke the protocol", {
      clientId: this.id,
      reason,
    });
    this.close(CLOSE_CODE.PROTOCOL_ERROR, reason);
  }

  /**
   * A `wsgate.v1` frame of an open client: data is returned for onMessage
   * (text without its `:`), control frames are answered here.
   */
  #frame(message: Message): Message | undefined {
    const frame = parseClientFrame(message);
    switch (frame.kind) {
      case "data":
        return frame.message;
      case "ping":
        if (frame.seq !== undefined) this.#session!.ack(frame.seq);
        this.#socket.send(PONG_FRAME);
        return undefined;
      case "ack":
        this.#session!.ack(frame.seq);
        return undefined;
      case "hello":
        this.#protocolError("a second hello");
        return undefined;
      case "invalid":
        this.#protocolError(frame.reason);
        return undefined;
    }
  }

  #receive(message: Message): void {
    if (this.#state !== OPENED) {
      if (this.#state === HELLO) this.#hello(message);
      return;
    }
    if (this.#session !== undefined) {
      const data = this.#frame(message);
      if (data === undefined) return;
      message = data;
    }
    this.#metrics.messagesIn++;
    this.#metrics.bytesIn += messageLength(message);
    if (this.#bucket !== undefined && !this.#bucket.take(Date.now())) {
      this.#options.logger.info("closed a client that sent too fast", {
        clientId: this.id,
        limit: this.#options.rateLimit,
      });
      this.#metrics.rateLimitCloses++;
      this.close(POLICY_VIOLATION, "rate limit");
      return;
    }
    this.#dispatch({ kind: "message", message });
    if (this.#queued >= this.#options.maxQueuedMessages && !this.#paused) {
      // The application is behind: TCP pushes back on the client.
      this.#paused = true;
      this.#socket.pause();
    }
  }

  /**
   * The socket refused what the client sent: 1002, 1007, 1009, or 1008
   * for a message that came while paused on a socket that cannot stop
   * reading (the client sent faster than onMessage took its messages: it
   * counts as a rate-limit close).
   */
  #refused(code: number, reason: string): void {
    if (code === MESSAGE_TOO_BIG) this.#metrics.tooBigCloses++;
    else if (code === POLICY_VIOLATION) this.#metrics.rateLimitCloses++;
    else this.#metrics.protocolErrorCloses++;
    this.#options.logger.info("closed a client that broke the rules", {
      clientId: this.id,
      code,
      reason,
    });
    this.#gone(code, true);
  }

  /**
   * Writes go out when the event loop turns, so a burst sent in one go is
   * all pending at first. Once the loop has turned, what is still pending
   * is what the client did not take.
   */
  #checkSoon(): void {
    this.#checking = true;
    setTimeout(() => this.#check(Infinity), 0);
  }

  /**
   * Closes the client if it is over `maxBufferedBytes` and not draining:
   * looked at once the loop has turned (its writes may not have had their
   * turn yet), then every `RECHECK_MS`, it must have less waiting each time
   * than the time before. So what waits never grows past a burst.
   */
  #check(lastBuffered: number): void {
    const socket = this.#socket;
    const buffered = socket.bufferedAmount;
    if (!socket.isOpen || buffered <= this.#maxBufferedBytes) {
      this.#checking = false;
    } else if (buffered >= lastBuffered) {
      this.#checking = false;
      this.#overflow();
    } else setTimeout(() => this.#check(buffered), RECHECK_MS);
  }

  /**
   * Closes a client that does not read fast enough: what waits for it is
   * dropped, and it leaves the hub at once rather than when its socket
   * finishes closing.
   */
  #overflow(): void {
    this.#options.logger.info("closed a slow client", {
      clientId: this.id,
      bufferedBytes: this.#socket.bufferedAmount,
      limit: this.#maxBufferedBytes,
    });
    this.#metrics.slowConsumerCloses++;
    this.#socket.abandon(
      POLICY_VIOLATION,
      "slow consumer: too much data waiting",
    );
    this.#gone(POLICY_VIOLATION, true);
  }

  #closed(code: number): void {
    this.#socketDone = true;
    this.#gone(code, code === CLOSE_CODE.ABNORMAL);
    this.#maybeFinish();
  }

  /**
   * Leaves the hub and queues onClose, once; with `drop`, the messages
   * still waiting for onMessage are dropped.
   */
  #gone(code: number, drop: boolean): void {
    if (this.#state === GONE) return;
    const wasOpen = this.#state === OPENED;
    this.#state = GONE;
    clearTimeout(this.#helloTimer);
    if (!wasOpen) return this.#maybeFinish();
    this.#metrics.connectionsClosed++;
    const session = this.#session;
    if (session === undefined) this.#options.hub.remove(this.id);
    else {
      // The session's next connection waits for this one's onClose.
      this.#closeDone = Promise.withResolvers<void>();
      session.hooksDone = this.#closeDone.promise;
      if (!this.#superseded) this.#options.sessions!.detach(session, code);
    }
    this.#options.logger.debug("client closed", { clientId: this.id, code });
    if (drop && this.#backlog !== undefined) {
      this.#backlog = this.#backlog.filter((e) => e.kind !== "message");
      this.#queued = 0;
    }
    // Queued, not run here: this may be inside a send loop of the hub.
    (this.#backlog ??= []).push(CLOSE_EVENT);
    if (!this.#busy) queueMicrotask(() => this.#pump());
  }

  /** Runs a hook now, or queues it behind the ones still running. */
  #dispatch(event: HookEvent): void {
    if (event.kind === "connect" && event.after !== undefined) {
      // Behind the hooks of the session's last connection.
      this.#busy = true;
      const connect: HookEvent = { kind: "connect", ctx: event.ctx };
      event.after.then(() => {
        this.#busy = false;
        (this.#backlog ??= []).unshift(connect);
        this.#pump();
      });
      return;
    }
    if (this.#busy || this.#backlog?.length) {
      (this.#backlog ??= []).push(event);
      if (event.kind === "message") this.#queued++;
    } else this.#run(event);
  }

  #pump(): void {
    const backlog = this.#backlog;
    while (!this.#busy && backlog !== undefined && backlog.length > 0) {
      const event = backlog.shift()!;
      if (event.kind === "message") this.#queued--;
      this.#run(event);
    }
    if (this.#paused && this.#queued * 2 <= this.#options.maxQueuedMessages) {
      this.#paused = false;
      this.#socket.resume();
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
      this.#closeDone !== undefined && this.#state === GONE && !this.#busy &&
      !this.#backlog?.length
    ) {
      this.#closeDone.resolve();
      this.#closeDone = undefined;
    }
    if (
      this.#finished || !this.#socketDone || this.#state !== GONE ||
      this.#busy || (this.#backlog !== undefined && this.#backlog.length > 0)
    ) return;
    this.#finished = true;
    this.#options.onFinished(this);
  }

  /**
   * Calls the hook of `event` on the application current now (after a
   * reload, the new one, also for the onClose of a client whose onConnect
   * ran on the old one).
   */
  #call(event: HookEvent): void | Promise<void> {
    const { ctx } = this.#options;
    return this.#options.app.run((app) => {
      switch (event.kind) {
        case "connect":
          return app.onConnect?.(this.id, event.ctx);
        case "message":
          return app.onMessage?.(this.id, event.message, ctx);
        case "close":
          return app.onClose?.(this.id, ctx);
      }
    });
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
