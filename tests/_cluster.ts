// Test helpers: real register and service processes, and real WebSocket
// clients with a message queue.

import type { Message } from "../mod.ts";

const root = new URL("..", import.meta.url);

/** A child process whose first stdout line announced it. */
export class Child implements AsyncDisposable {
  readonly #process: Deno.ChildProcess;
  readonly #lines: AsyncIterator<string>;
  readonly first: string;
  readonly #stderr: { text: string; done: Promise<void> };

  private constructor(
    process: Deno.ChildProcess,
    lines: AsyncIterator<string>,
    first: string,
    stderr: { text: string; done: Promise<void> },
  ) {
    this.#process = process;
    this.#lines = lines;
    this.first = first;
    this.#stderr = stderr;
  }

  /**
   * Runs `deno run -A <script> ...args` and waits for its first line. With
   * `captureStderr`, stderr is kept in {@linkcode Child.stderr} instead of
   * shown.
   */
  static async start(
    script: string,
    args: string[],
    options: { captureStderr?: boolean } = {},
  ): Promise<Child> {
    const process = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL(script, root).pathname, ...args],
      stdout: "piped",
      stderr: options.captureStderr ? "piped" : "inherit",
      stdin: "null",
    }).spawn();
    const stderr = { text: "", done: Promise.resolve() };
    if (options.captureStderr) {
      stderr.done = (async () => {
        for await (
          const text of process.stderr.pipeThrough(new TextDecoderStream())
        ) stderr.text += text;
      })();
    }
    const lines = process.stdout
      .pipeThrough(new TextDecoderStream())
      .pipeThrough(new LineSplitter())[Symbol.asyncIterator]();
    const first = await lines.next();
    if (first.done) {
      await process.status;
      await stderr.done;
      throw new Error(`${script} exited before it printed a line`);
    }
    return new Child(process, lines, first.value, stderr);
  }

  /** What the process wrote on stderr so far (with `captureStderr`). */
  get stderr(): string {
    return this.#stderr.text;
  }

  get pid(): number {
    return this.#process.pid;
  }

  /** Sends a signal without waiting (SIGSTOP, SIGCONT, ...). */
  signal(signal: Deno.Signal): void {
    this.#process.kill(signal);
  }

  /** Sends a signal (default SIGTERM) and waits for the exit. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    try {
      this.#process.kill(signal);
    } catch {
      // Already gone.
    }
    // Drain stdout so the process can exit and the stream is closed.
    while (!(await this.#lines.next()).done) { /* discard */ }
    const status = await this.#process.status;
    await this.#stderr.done;
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL");
  }
}

class LineSplitter extends TransformStream<string, string> {
  constructor() {
    let buffer = "";
    super({
      transform(chunk, controller) {
        buffer += chunk;
        let i;
        while ((i = buffer.indexOf("\n")) >= 0) {
          controller.enqueue(buffer.slice(0, i));
          buffer = buffer.slice(i + 1);
        }
      },
      flush(controller) {
        if (buffer.length > 0) controller.enqueue(buffer);
      },
    });
  }
}

/** A register process on a free port. */
export async function startRegisterProcess(
  args: string[] = [],
): Promise<{ child: Child; address: string }> {
  const child = await Child.start("register.ts", [
    "--port",
    "0",
    "--log-level",
    "warn",
    ...args,
  ]);
  const match = /listening on (\S+)$/.exec(child.first);
  if (match === null) throw new Error(`unexpected line: ${child.first}`);
  return { child, address: match[1]! };
}

/** What an echo service process announces. */
export interface ServiceInfo {
  nodeId: string;
  port: number;
  rpcAddress: string;
}

/** An echo service process (tests/fixtures/echo_service.ts). */
export async function startServiceProcess(
  register: string,
  args: string[] = [],
  options: { captureStderr?: boolean } = {},
): Promise<{ child: Child; info: ServiceInfo }> {
  const child = await Child.start("tests/fixtures/echo_service.ts", [
    "--register",
    register,
    ...args,
  ], options);
  return { child, info: JSON.parse(child.first) as ServiceInfo };
}

/** A WebSocket client that queues what it receives. */
export class TestClient implements AsyncDisposable {
  readonly socket: WebSocket;
  readonly #queue: Message[] = [];
  #waiter: (() => void) | undefined;
  #closed: Promise<CloseEvent>;
  id = "";

  constructor(url: string) {
    this.socket = new WebSocket(url);
    this.socket.binaryType = "arraybuffer";
    this.socket.onmessage = (event) => {
      this.#queue.push(
        typeof event.data === "string"
          ? event.data
          : new Uint8Array(event.data as ArrayBuffer),
      );
      this.#waiter?.();
    };
    this.#closed = new Promise((resolve) => {
      this.socket.addEventListener("close", (event) => {
        resolve(event);
        this.#waiter?.();
      });
    });
  }

  /** Connects to an echo service and reads the `id:` greeting. */
  static async connect(port: number): Promise<TestClient> {
    const client = new TestClient(`ws://127.0.0.1:${port}/`);
    const greeting = await client.next();
    if (typeof greeting !== "string" || !greeting.startsWith("id:")) {
      throw new Error(`expected an id greeting, got ${String(greeting)}`);
    }
    client.id = greeting.slice(3);
    return client;
  }

  /** The next message; rejects after `timeoutMs`. */
  async next(timeoutMs = 5000): Promise<Message> {
    const deadline = Date.now() + timeoutMs;
    while (this.#queue.length === 0) {
      if (this.socket.readyState === WebSocket.CLOSED) {
        throw new Error("socket closed while waiting for a message");
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#waiter = undefined;
    }
    return this.#queue.shift()!;
  }

  /** The next `n` messages. */
  async take(n: number): Promise<Message[]> {
    const out: Message[] = [];
    for (let i = 0; i < n; i++) out.push(await this.next());
    return out;
  }

  /** Messages received and not yet read. */
  get pending(): readonly Message[] {
    return this.#queue;
  }

  /** Resolves with the close event. */
  get closed(): Promise<CloseEvent> {
    return this.#closed;
  }

  async close(): Promise<void> {
    if (this.socket.readyState < WebSocket.CLOSING) this.socket.close();
    await this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Polls `check` until it returns true; throws after `timeoutMs`. */
export async function eventually(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`timed out waiting until ${what}`, { cause: lastError });
}

/** What {@linkcode runCapturingStderr} saw. */
export interface CapturedRun {
  /** Everything the process wrote on stderr until it was stopped. */
  readonly stderr: string;
  /** The exit code; killed processes end with 128 + the signal number. */
  readonly code: number;
}

/**
 * Runs `deno run -A <script> ...args` with stderr captured, until stderr
 * matches `until` (`null`: until it exits) or the process exits, or
 * `timeoutMs` passes; then kills it if it still runs.
 */
export async function runCapturingStderr(
  script: string,
  args: string[],
  until: RegExp | null,
  timeoutMs = 20_000,
): Promise<CapturedRun> {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(script, root).pathname, ...args],
    stdout: "null",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      process.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }, timeoutMs);
  let stderr = "";
  const decoder = new TextDecoder();
  for await (const chunk of process.stderr) {
    stderr += decoder.decode(chunk, { stream: true });
    if (until?.test(stderr)) {
      try {
        process.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }
  const { code } = await process.status;
  clearTimeout(timer);
  return { stderr, code };
}
