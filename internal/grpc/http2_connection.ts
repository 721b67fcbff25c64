// One HTTP/2 client connection for Connect's gRPC transport: opened on
// first use, re-opened after it breaks, pinged while it carries calls, and
// never left without an error listener.
//
// It stands in for connect-node's Http2SessionManager, which, on Deno 2.9,
// can spin forever (a loop of already-settled awaits that starves timers and
// I/O) when a session is destroyed between its "connect" event and the
// manager's next step; a mutual-TLS server refusing the client's
// certificate does exactly that. It also drops its error listener when a
// session leaves its "ready" state, and Deno may emit one more error then.

import { messageOf } from "../base/describe.ts";
import * as http2 from "node:http2";
import { Code, ConnectError } from "npm:@connectrpc/connect@2.2.0";

/** Options of {@linkcode Http2Connection}. */
export interface Http2ConnectionOptions {
  /** While calls are open, ping this often when nothing was received. */
  readonly pingIntervalMs: number;
  /**
   * Drop the connection when a ping is not answered this soon; also the
   * longest a connection may take to open.
   */
  readonly pingTimeoutMs: number;
  /** Passed to `http2.connect`: TLS settings among others. */
  readonly sessionOptions: http2.SecureClientSessionOptions;
}

/**
 * A lazily opened HTTP/2 connection to one authority, shaped as Connect's
 * session manager (`authority`, `request`, `notifyResponseByteRead`).
 */
export class Http2Connection {
  /** `scheme://host:port`, as Connect checks it against request URLs. */
  readonly authority: string;
  readonly #options: Http2ConnectionOptions;
  #session: http2.ClientHttp2Session | undefined;
  #opening: Promise<http2.ClientHttp2Session> | undefined;
  /** Open calls and the ping timer of each session. */
  readonly #states = new WeakMap<
    http2.ClientHttp2Session,
    { streams: number; pings: ReturnType<typeof setInterval> | undefined }
  >();
  #lastAlive = 0;
  #closed = false;

  constructor(url: string, options: Http2ConnectionOptions) {
    this.authority = new URL(url).origin;
    this.#options = options;
  }

  /** Opens a stream for one call, connecting first when needed. */
  async request(
    method: string,
    path: string,
    headers: http2.OutgoingHttpHeaders,
    options: Omit<http2.ClientSessionRequestOptions, "signal">,
  ): Promise<http2.ClientHttp2Stream> {
    for (let attempt = 0;; attempt++) {
      const session = await this.#connect();
      try {
        const stream = session.request(
          { ...headers, ":method": method, ":path": path },
          options,
        );
        this.#track(session, stream);
        return stream;
      } catch (error) {
        // The session broke between connecting and this request.
        this.#forget(session);
        if (attempt > 0) throw unavailable(error);
      }
    }
  }

  /** Data arrived: the connection is alive, no ping needed yet. */
  notifyResponseByteRead(_stream: http2.ClientHttp2Stream): void {
    this.#lastAlive = Date.now();
  }

  /** Closes the connection and fails its open calls; no new ones open. */
  close(): void {
    this.#closed = true;
    const session = this.#session;
    this.#forget(session);
    session?.destroy(
      new ConnectError("connection closed", Code.Canceled),
      http2.constants.NGHTTP2_CANCEL,
    );
  }

  #connect(): Promise<http2.ClientHttp2Session> {
    if (this.#closed) {
      return Promise.reject(
        new ConnectError("connection closed", Code.Canceled),
      );
    }
    const current = this.#session;
    if (current !== undefined && !current.closed && !current.destroyed) {
      return Promise.resolve(current);
    }
    return this.#opening ??= this.#open().finally(() => {
      this.#opening = undefined;
    });
  }

  #open(): Promise<http2.ClientHttp2Session> {
    return new Promise((resolve, reject) => {
      let session: http2.ClientHttp2Session;
      try {
        session = http2.connect(this.authority, this.#options.sessionOptions);
      } catch (error) {
        return reject(unavailable(error));
      }
      let settled = false;
      const fail = (error: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        session.destroy();
        reject(unavailable(error));
      };
      const timer = setTimeout(
        () =>
          fail(
            new Error(
              `no connection within ${this.#options.pingTimeoutMs} ms`,
            ),
          ),
        this.#options.pingTimeoutMs,
      );
      // Errors after the connection opened fail its streams; they must
      // never be thrown for want of a listener.
      session.on("error", (error) => fail(error));
      session.once("close", () => {
        fail(new Error("the connection closed"));
        this.#forget(session);
      });
      session.once("connect", () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (session.destroyed || session.closed || this.#closed) {
          session.destroy();
          return reject(unavailable(new Error("the connection closed")));
        }
        session.unref();
        this.#session = session;
        this.#lastAlive = Date.now();
        resolve(session);
      });
    });
  }

  #track(session: http2.ClientHttp2Session, stream: http2.ClientHttp2Stream) {
    let state = this.#states.get(session);
    if (state === undefined) {
      state = { streams: 0, pings: undefined };
      this.#states.set(session, state);
    }
    const counted = state;
    if (counted.streams++ === 0) {
      session.ref();
      counted.pings = this.#startPings(session);
    }
    stream.once("response", () => this.#lastAlive = Date.now());
    stream.once("close", () => {
      if (--counted.streams > 0) return;
      clearInterval(counted.pings);
      counted.pings = undefined;
      if (!session.destroyed) session.unref();
    });
  }

  /** Pings `session` while it carries calls and nothing else arrives. */
  #startPings(
    session: http2.ClientHttp2Session,
  ): ReturnType<typeof setInterval> {
    const { pingIntervalMs, pingTimeoutMs } = this.#options;
    let waiting = false;
    const interval = setInterval(() => {
      if (session.destroyed) return clearInterval(interval);
      if (waiting || Date.now() - this.#lastAlive < pingIntervalMs) return;
      waiting = true;
      const timeout = setTimeout(() => {
        session.destroy(
          new ConnectError("PING timed out", Code.Unavailable),
          http2.constants.NGHTTP2_CANCEL,
        );
      }, pingTimeoutMs);
      try {
        session.ping((error) => {
          clearTimeout(timeout);
          waiting = false;
          if (error === null) this.#lastAlive = Date.now();
        });
      } catch {
        clearTimeout(timeout);
        waiting = false;
      }
    }, Math.max(10, pingIntervalMs / 2));
    return interval;
  }

  #forget(session: http2.ClientHttp2Session | undefined): void {
    if (session === undefined) return;
    const state = this.#states.get(session);
    if (state !== undefined) clearInterval(state.pings);
    this.#states.delete(session);
    if (this.#session === session) this.#session = undefined;
  }
}

function unavailable(reason: unknown): ConnectError {
  if (reason instanceof ConnectError) return reason;
  const message = messageOf(reason);
  return new ConnectError(
    message,
    Code.Unavailable,
    undefined,
    undefined,
    reason,
  );
}
