// Test helper: a `wsgate.v1` client at the wire level (docs/protocol.md),
// written from the protocol document and not from the service's code: it
// offers the subprotocol, sends the hello, reads the welcome, checks that
// data frames arrive with seqs one after another (no gap, no duplicate),
// and hands out what a resume needs.

/** The welcome frame, parsed. */
export interface V1Welcome {
  readonly clientId: string;
  readonly token: string;
  readonly recovered: boolean;
  readonly seq: number;
}

/** A payload as the application sent it. */
export type V1Message = string | Uint8Array;

/** Options of {@linkcode V1Socket.open}. */
export interface V1SocketOptions {
  /** Resume: the token and the seq of the last data frame received. */
  readonly resume?: { readonly token: string; readonly seq: number };
  /** The hello to send instead of the usual one (to test bad ones). */
  readonly rawHello?: string;
  /** How long to wait for the welcome. */
  readonly timeoutMs?: number;
}

/** How the socket closed. */
export interface V1Close {
  readonly code: number;
  readonly reason: string;
}

const utf8 = new TextDecoder();

/** One connection that speaks `wsgate.v1`. */
export class V1Socket implements AsyncDisposable {
  readonly socket: WebSocket;
  /** The welcome of this connection. */
  welcome!: V1Welcome;
  /** The seq of the last data frame received (the welcome's at first). */
  lastSeq = 0;
  /** Payloads of the data frames received on this connection, in order. */
  readonly received: V1Message[] = [];
  /** Control frames received after the welcome (pongs), as JSON text. */
  readonly control: string[] = [];
  /** What broke the protocol, if anything did (a gap, a duplicate, ...). */
  readonly errors: string[] = [];
  /** Settles when the socket closed. */
  readonly closed: Promise<V1Close>;
  #welcomed = Promise.withResolvers<V1Welcome>();
  #waiters: (() => void)[] = [];
  #gotWelcome = false;

  private constructor(socket: WebSocket) {
    this.socket = socket;
    socket.binaryType = "arraybuffer";
    this.closed = new Promise((resolve) => {
      socket.addEventListener("close", (event) => {
        resolve({ code: event.code, reason: event.reason });
        this.#welcomed.reject(
          new Error(`closed before the welcome: ${event.code} ${event.reason}`),
        );
        this.#wake();
      });
    });
    this.#welcomed.promise.catch(() => {});
    socket.addEventListener("message", (event) => this.#frame(event.data));
  }

  /**
   * Opens a connection to `url` offering `wsgate.v1`, sends the hello and
   * waits for the welcome.
   */
  static async open(
    url: string,
    options: V1SocketOptions = {},
  ): Promise<V1Socket> {
    const socket = new WebSocket(url, "wsgate.v1");
    const client = new V1Socket(socket);
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener("open", () => resolve(), { once: true });
      socket.addEventListener(
        "close",
        (e) => reject(new Error(`closed before open: ${e.code} ${e.reason}`)),
        { once: true },
      );
    });
    if (socket.protocol !== "wsgate.v1") {
      throw new Error(
        `the service selected ${JSON.stringify(socket.protocol)}`,
      );
    }
    const hello = options.rawHello ?? JSON.stringify(
      options.resume === undefined ? { type: "hello" } : {
        type: "hello",
        token: options.resume.token,
        seq: options.resume.seq,
      },
    );
    socket.send(hello);
    const timeoutMs = options.timeoutMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      client.welcome = await Promise.race([
        client.#welcomed.promise,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error("no welcome in time")),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  /** What a resume of this session needs: its token and the last seq. */
  get resume(): { token: string; seq: number } {
    return { token: this.welcome.token, seq: this.lastSeq };
  }

  /** Sends text data (`:` + text). */
  send(message: V1Message): void {
    if (typeof message === "string") this.socket.send(`:${message}`);
    else this.socket.send(message as Uint8Array<ArrayBuffer>);
  }

  /** Sends a ping that acknowledges every frame received so far. */
  ping(): void {
    this.socket.send(JSON.stringify({ type: "ping", seq: this.lastSeq }));
  }

  /** Acknowledges every frame received so far. */
  ack(): void {
    this.socket.send(JSON.stringify({ type: "ack", seq: this.lastSeq }));
  }

  /** Closes with `code` (1000 ends the session) and waits for the close. */
  async close(code = 1000): Promise<V1Close> {
    if (this.socket.readyState <= WebSocket.OPEN) this.socket.close(code);
    return await this.closed;
  }

  /** Waits until `check` holds (re-checked on every frame) or it closed. */
  async until(
    what: string,
    check: () => boolean,
    timeoutMs = 10_000,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (this.socket.readyState === WebSocket.CLOSED) {
        throw new Error(`closed while waiting until ${what}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting until ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 50));
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.socket.readyState === WebSocket.CLOSED) return;
    this.socket.close(1000);
    await this.closed;
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  #frame(data: unknown): void {
    try {
      this.#read(data);
    } finally {
      this.#wake();
    }
  }

  #read(data: unknown): void {
    if (typeof data === "string" && data.startsWith("{")) {
      const frame = JSON.parse(data);
      if (frame.type === "welcome") {
        if (this.#gotWelcome) this.errors.push("a second welcome");
        this.#gotWelcome = true;
        this.lastSeq = frame.seq;
        this.#welcomed.resolve(frame as V1Welcome);
      } else this.control.push(data);
      return;
    }
    if (!this.#gotWelcome) this.errors.push("a data frame before the welcome");
    let seq: number;
    let message: V1Message;
    if (typeof data === "string") {
      const colon = data.indexOf(":");
      const digits = data.slice(0, colon);
      if (colon < 1 || !/^[1-9][0-9]*$/.test(digits)) {
        this.errors.push(`a text frame without a seq: ${data.slice(0, 40)}`);
        return;
      }
      seq = Number(digits);
      message = data.slice(colon + 1);
    } else {
      const bytes = new Uint8Array(data as ArrayBuffer);
      seq = 0;
      let scale = 1;
      let at = 0;
      for (;;) {
        const byte = bytes[at++];
        if (byte === undefined) {
          this.errors.push("a binary frame without a seq");
          return;
        }
        seq += (byte & 0x7f) * scale;
        scale *= 128;
        if ((byte & 0x80) === 0) break;
      }
      message = bytes.slice(at);
    }
    if (seq !== this.lastSeq + 1) {
      this.errors.push(`seq ${seq} after ${this.lastSeq}`);
    }
    this.lastSeq = seq;
    this.received.push(message);
  }
}

/** Text of a payload (binary payloads as UTF-8). */
export function textOf(message: V1Message): string {
  return typeof message === "string" ? message : utf8.decode(message);
}
