// Test helpers: WebSocket clients at any address (hosts in network
// namespaces, services on loopback) that check numbered messages as they
// arrive. A numbered message is "#<stream>:<seq>" or "#<stream>:<seq>:<more>"
// (tests/fixtures/net_app.ts sends them): each client keeps, per stream,
// how many arrived, the last seq and every break of the order 1, 2, 3, ...
// (a duplicate, a gap or a step back). Other messages are queued.

/** What one client saw of one stream. */
export interface StreamLog {
  /** Messages of the stream that arrived. */
  count: number;
  /** The last seq that arrived, 0 before the first. */
  last: number;
  /** Breaks of the order, as `"got 7 after 5"`. */
  breaks: string[];
  /** Seqs that arrived a second time (or more). */
  duplicates: number;
  /** Seqs that arrived. */
  readonly seen: Set<number>;
  /** When each seq arrived (performance.now()), if timed. */
  readonly arrivals?: Map<number, number>;
}

function newLog(timed: boolean): StreamLog {
  const log = {
    count: 0,
    last: 0,
    breaks: [],
    duplicates: 0,
    seen: new Set<number>(),
  };
  return timed ? { ...log, arrivals: new Map() } : log;
}

/** A client that greets with "id:<clientId>" and sorts what it receives. */
export class StreamClient implements AsyncDisposable {
  readonly socket: WebSocket;
  readonly url: string;
  /** Streams whose arrival times are kept (for latency). */
  readonly timed: Set<string>;
  readonly streams: Map<string, StreamLog> = new Map();
  /** Messages that are not numbered, in order of arrival. */
  readonly others: string[] = [];
  id = "";
  #waiters: (() => void)[] = [];
  readonly #closed: Promise<CloseEvent>;
  #isClosed = false;
  /** The close code and reason, once closed. */
  closedWith = "";

  private constructor(url: string, timed: Iterable<string>) {
    this.url = url;
    this.timed = new Set(timed);
    this.socket = new WebSocket(url);
    this.socket.onmessage = (event) => {
      if (typeof event.data === "string") this.#receive(event.data);
      this.#wake();
    };
    this.#closed = new Promise((resolve) => {
      this.socket.addEventListener("close", (event) => {
        this.#isClosed = true;
        this.closedWith = `${event.code} ${event.reason}`.trim();
        resolve(event);
        this.#wake();
      });
    });
  }

  /**
   * Connects and waits for the "id:" greeting; rejects after `timeoutMs`
   * or when the socket closes first.
   */
  static async connect(
    url: string,
    options: { timeoutMs?: number; timed?: Iterable<string> } = {},
  ): Promise<StreamClient> {
    const client = new StreamClient(url, options.timed ?? []);
    try {
      const greeting = await client.until(
        `a greeting from ${url}`,
        () => client.others.some((m) => m.startsWith("id:")),
        options.timeoutMs ?? 10_000,
      ).then(() => client.others.find((m) => m.startsWith("id:"))!);
      client.others.splice(client.others.indexOf(greeting), 1);
      client.id = greeting.slice(3);
      return client;
    } catch (error) {
      await client.close();
      throw error;
    }
  }

  #receive(text: string): void {
    const match = /^#([^:]+):(\d+)(?::|$)/.exec(text);
    if (match === null) {
      this.others.push(text);
      return;
    }
    const stream = match[1]!;
    const seq = Number(match[2]);
    let log = this.streams.get(stream);
    if (log === undefined) {
      log = newLog(this.timed.has(stream));
      this.streams.set(stream, log);
    }
    if (seq !== log.last + 1) log.breaks.push(`got ${seq} after ${log.last}`);
    if (log.seen.has(seq)) log.duplicates++;
    log.seen.add(seq);
    log.count++;
    log.last = Math.max(log.last, seq);
    log.arrivals?.set(seq, performance.now());
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** What arrived of `stream` (an empty log before the first). */
  log(stream: string): StreamLog {
    return this.streams.get(stream) ?? newLog(false);
  }

  /** Whether the socket is open. */
  get open(): boolean {
    return !this.#isClosed && this.socket.readyState === WebSocket.OPEN;
  }

  /** Resolves with the close event. */
  get closed(): Promise<CloseEvent> {
    return this.#closed;
  }

  /**
   * Waits until `check()` holds, re-checking on every message; throws
   * naming `what` after `timeoutMs` or when the socket closed first.
   */
  async until(
    what: string,
    check: () => boolean,
    timeoutMs = 10_000,
  ): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!check()) {
      if (this.#isClosed) {
        throw new Error(
          `socket to ${this.url} closed (${this.closedWith}) before ${what}`,
        );
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, 250));
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#waiters.push(done);
      });
    }
  }

  /** Waits for an unnumbered message that starts with `prefix`, takes it. */
  async take(prefix: string, timeoutMs = 10_000): Promise<string> {
    const find = () => this.others.findIndex((m) => m.startsWith(prefix));
    await this.until(`a message "${prefix}..."`, () => find() >= 0, timeoutMs);
    return this.others.splice(find(), 1)[0]!;
  }

  /** Sends a text frame if the socket is open; says whether it was. */
  send(text: string): boolean {
    if (!this.open) return false;
    this.socket.send(text);
    return true;
  }

  async close(): Promise<void> {
    if (this.socket.readyState < WebSocket.CLOSING) this.socket.close();
    await this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Closes the clients, giving up after `timeoutMs` on those whose close does
 * not finish.
 */
export async function closeAll(
  clients: readonly StreamClient[],
  timeoutMs = 3000,
): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.all(clients.map((client) => client.close())),
    new Promise((resolve) => timer = setTimeout(resolve, timeoutMs)),
  ]);
  clearTimeout(timer);
}

/** Sends numbered messages through one client at a steady pace. */
export class Sender {
  readonly stream: string;
  /** Messages sent so far (the last seq). */
  sent = 0;
  readonly #client: StreamClient;
  readonly #command: (text: string) => string;
  #running: Promise<void> | undefined;
  #stop = false;

  /**
   * `command` wraps a numbered message into what the client sends, e.g.
   * `(m) => "c <clientId> " + m`.
   */
  constructor(
    client: StreamClient,
    stream: string,
    command: (text: string) => string,
  ) {
    this.#client = client;
    this.stream = stream;
    this.#command = command;
  }

  /** Sends one message now; false when the client is closed. */
  sendOne(): boolean {
    if (!this.#client.open) return false;
    this.#client.send(this.#command(`#${this.stream}:${this.sent + 1}`));
    this.sent++;
    return true;
  }

  /** Sends `perTick` messages every `intervalMs` until {@linkcode stop}. */
  start(intervalMs: number, perTick = 1): void {
    this.#stop = false;
    this.#running = (async () => {
      while (!this.#stop) {
        for (let i = 0; i < perTick; i++) {
          if (!this.sendOne()) return;
        }
        await new Promise((resolve) => setTimeout(resolve, intervalMs));
      }
    })();
  }

  /** Stops sending; resolves once the loop ended. */
  async stop(): Promise<void> {
    this.#stop = true;
    await this.#running;
  }
}
