// Test helpers: real register and service processes, registers and
// services in the test process on free loopback ports, and real WebSocket
// clients with a message queue.

import {
  type Api,
  type Application,
  type Message,
  type Register,
  type RegisterOptions,
  type Service,
  type ServiceOptions,
  startRegister,
  startService,
} from "../mod.ts";
import { splitLines } from "./_lines.ts";

const root = new URL("..", import.meta.url);

/** Options of {@linkcode Child.start}. */
export interface ChildOptions {
  /**
   * Collect stderr (see {@linkcode Child.stderr}) instead of passing it on.
   *
   * @default {false}
   */
  captureStderr?: boolean;
  /** Flags for `deno run` before the script, e.g. `--v8-flags=--expose-gc`. */
  denoFlags?: string[];
  /** Added to the environment the process inherits. */
  env?: Record<string, string>;
}

/** A child process whose first stdout line announced it. */
export class Child implements AsyncDisposable {
  readonly #process: Deno.ChildProcess;
  readonly #lines: AsyncIterator<string>;
  readonly #stderr: Promise<void>;
  #stderrText = "";
  #first = "";
  /** Stdout lines after the first, as read by `nextLine()` or `stop()`. */
  readonly output: string[] = [];

  private constructor(
    process: Deno.ChildProcess,
    lines: AsyncIterator<string>,
    captureStderr: boolean,
  ) {
    this.#process = process;
    this.#lines = lines;
    this.#stderr = captureStderr
      ? (async () => {
        for await (
          const text of process.stderr.pipeThrough(new TextDecoderStream())
        ) this.#stderrText += text;
      })()
      : Promise.resolve();
  }

  /** Runs `deno run -A <script> ...args` and waits for its first line. */
  static async start(
    script: string,
    args: string[],
    options: ChildOptions = {},
  ): Promise<Child> {
    const { captureStderr = false, denoFlags = [], env = {} } = options;
    const process = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        ...denoFlags,
        new URL(script, root).pathname,
        ...args,
      ],
      env,
      stdout: "piped",
      stderr: captureStderr ? "piped" : "inherit",
      stdin: "null",
    }).spawn();
    const lines = process.stdout
      .pipeThrough(new TextDecoderStream())
      .pipeThrough(splitLines())[Symbol.asyncIterator]();
    const child = new Child(process, lines, captureStderr);
    const first = await lines.next();
    if (first.done) {
      await process.status;
      await child.#stderr;
      throw new Error(
        `${script} exited before it printed a line${
          captureStderr ? `: ${child.#stderrText}` : ""
        }`,
      );
    }
    child.#first = first.value;
    return child;
  }

  /** The first stdout line. */
  get first(): string {
    return this.#first;
  }

  get pid(): number {
    return this.#process.pid;
  }

  /** What the process wrote on stderr so far (with `captureStderr`). */
  get stderr(): string {
    return this.#stderrText;
  }

  /** Resolves with the exit status. */
  get status(): Promise<Deno.CommandStatus> {
    return this.#process.status;
  }

  /** The next stdout line, or undefined at the end of the output. */
  async nextLine(): Promise<string | undefined> {
    const next = await this.#lines.next();
    if (next.done) return undefined;
    this.output.push(next.value);
    return next.value;
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
    while (await this.nextLine() !== undefined) { /* kept in output */ }
    await this.#stderr;
    return await this.#process.status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL");
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

/** What a service process announces in its first line. */
export interface ServiceInfo {
  name: string;
  nodeId: string;
  port: number;
  rpcAddress: string;
  /** Undefined when it has none. */
  deliveryPort: number | undefined;
}

/** The ready line of `service.ts`, as {@linkcode ServiceInfo}. */
export function parseReadyLine(line: string): ServiceInfo {
  const match =
    /^service (\S+) on http:\/\/\S+:(\d+)\/ \(node ([0-9a-v]{12}), rpc (\S+?)(?:, delivery port (\d+))?\)$/
      .exec(line);
  if (match === null) throw new Error(`not a service's ready line: ${line}`);
  return {
    name: match[1]!,
    port: Number(match[2]),
    nodeId: match[3]!,
    rpcAddress: match[4]!,
    deliveryPort: match[5] === undefined ? undefined : Number(match[5]),
  };
}

/**
 * The flags that a test service process starts with: `register`, free ports
 * on loopback, logs at warn; `args` come after them and override them.
 */
export function serviceArgs(
  app: string,
  register: string,
  args: readonly string[] = [],
): string[] {
  return [
    "--app",
    app,
    "--register",
    register,
    "--hostname",
    "127.0.0.1",
    "--port",
    "0",
    "--rpc-port",
    "0",
    "--log-level",
    "warn",
    ...args,
  ];
}

/** `deno run -A service.ts --app <app>` for tests, with its ready line. */
async function startAppProcess(
  app: string,
  register: string,
  args: string[],
  options: ChildOptions,
): Promise<{ child: Child; info: ServiceInfo }> {
  const child = await Child.start(
    "service.ts",
    serviceArgs(app, register, args),
    options,
  );
  return { child, info: parseReadyLine(child.first) };
}

/** A service process of the echo app (tests/fixtures/echo_app.ts). */
export function startServiceProcess(
  register: string,
  args: string[] = [],
  options: ChildOptions = {},
): Promise<{ child: Child; info: ServiceInfo }> {
  return startAppProcess("tests/fixtures/echo_app.ts", register, args, options);
}

/** A register in this process on a free loopback port, with its address. */
export async function startLocalRegister(
  options: RegisterOptions = {},
): Promise<Register & { readonly address: string }> {
  const register = await startRegister({
    hostname: "127.0.0.1",
    port: 0,
    logLevel: "warn",
    ...options,
  });
  return Object.assign(register, { address: `127.0.0.1:${register.port}` });
}

/**
 * Options of a service in this process that joins `register`, with both
 * ports free on loopback and logs at warn; `options` adds or overrides.
 */
export function localServiceOptions(
  register: string | readonly string[],
  options: Partial<ServiceOptions> = {},
): ServiceOptions {
  return {
    register,
    hostname: "127.0.0.1",
    port: 0,
    rpcPort: 0,
    logLevel: "warn",
    ...options,
  };
}

/**
 * A service in this process with no hooks, to call the Api of the cluster
 * that `register` names; logs at error unless `options` say otherwise.
 */
export function startCaller(
  register: string | readonly string[],
  options: Partial<ServiceOptions> = {},
): Promise<Service> {
  return startService(
    {},
    localServiceOptions(register, { logLevel: "error", ...options }),
  );
}

/** Greets each client with `id:<clientId>`, as {@linkcode TestClient.connect} expects. */
export const greeter: Application = {
  onConnect(clientId, { api }) {
    return api.sendToClient(clientId, `id:${clientId}`);
  },
};

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
  static async connect(port: number, path = "/"): Promise<TestClient> {
    const client = new TestClient(`ws://127.0.0.1:${port}${path}`);
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

/** Waits until `api` counts `n` clients in the cluster; `what` says why. */
export function untilClientCount(
  api: Api,
  n: number,
  what: string,
): Promise<void> {
  return eventually(what, async () => (await api.getAllClientCount()) === n);
}

/** A service process of the lab app (tests/fixtures/lab_app.ts). */
export function startLabService(
  register: string,
  args: string[] = [],
  options: ChildOptions = {},
): Promise<{ child: Child; info: ServiceInfo }> {
  return startAppProcess("tests/fixtures/lab_app.ts", register, args, options);
}

/** The resident set size of a process, in bytes, from /proc. */
export async function rssOf(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (match === null) throw new Error(`no VmRSS for process ${pid}`);
  return Number(match[1]) * 1024;
}

/** How many file descriptors a process has open, from /proc. */
export async function openFdsOf(pid: number): Promise<number> {
  let count = 0;
  for await (const _ of Deno.readDir(`/proc/${pid}/fd`)) count++;
  return count;
}

/** A frame that a raw client read. */
export interface Frame {
  readonly opcode: number;
  readonly payload: Uint8Array;
}

/**
 * A WebSocket client on a bare TCP connection: it completes the handshake
 * and then does only what the test tells it, so it can stop reading or stop
 * answering pings.
 */
export class RawClient implements AsyncDisposable {
  readonly conn: Deno.TcpConn;
  #buffer: Uint8Array;

  private constructor(conn: Deno.TcpConn, rest: Uint8Array) {
    this.conn = conn;
    this.#buffer = rest;
  }

  /**
   * Connects and sends the upgrade request for `path`; resolves once the
   * response head arrived. Throws with the status line when it is not 101.
   */
  static async connect(
    port: number,
    path = "/",
    headers: Record<string, string> = {},
  ): Promise<RawClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const key = btoa(
      String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))),
    );
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`)
      .join("");
    await conn.write(new TextEncoder().encode(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
        `Upgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
        `${extra}\r\n`,
    ));
    let head: Uint8Array = new Uint8Array(0);
    const chunk = new Uint8Array(4096);
    let end = -1;
    while (end < 0) {
      const n = await conn.read(chunk);
      if (n === null) {
        conn.close();
        throw new Error("connection closed during the handshake");
      }
      head = concat(head, chunk.subarray(0, n));
      end = indexOfHeadEnd(head);
    }
    const text = new TextDecoder().decode(head.subarray(0, end));
    if (!text.startsWith("HTTP/1.1 101")) {
      conn.close();
      throw new Error(text); // the status line and the headers
    }
    return new RawClient(conn, head.slice(end + 4));
  }

  /** Sends one masked frame. */
  async send(opcode: number, payload: Uint8Array): Promise<void> {
    const length = payload.length;
    const header = length < 126
      ? [0x80 | opcode, 0x80 | length]
      : length < 65536
      ? [0x80 | opcode, 0x80 | 126, length >> 8, length & 0xff]
      : [
        0x80 | opcode,
        0x80 | 127,
        0,
        0,
        0,
        0,
        (length >>> 24) & 0xff,
        (length >>> 16) & 0xff,
        (length >>> 8) & 0xff,
        length & 0xff,
      ];
    const mask = crypto.getRandomValues(new Uint8Array(4));
    const masked = new Uint8Array(length);
    for (let i = 0; i < length; i++) masked[i] = payload[i]! ^ mask[i & 3]!;
    const frame = new Uint8Array(header.length + 4 + length);
    frame.set(header);
    frame.set(mask, header.length);
    frame.set(masked, header.length + 4);
    let written = 0;
    while (written < frame.length) {
      written += await this.conn.write(frame.subarray(written));
    }
  }

  /** Reads frames until a close frame or the end of the stream. */
  async readUntilClose(): Promise<{ frames: number; close?: Frame }> {
    let frames = 0;
    const chunk = new Uint8Array(1 << 16);
    while (true) {
      let frame: Frame | undefined;
      while ((frame = this.#nextFrame()) !== undefined) {
        if (frame.opcode === 0x8) return { frames, close: frame };
        frames++;
      }
      const n = await this.conn.read(chunk);
      if (n === null) return { frames };
      this.#buffer = concat(this.#buffer, chunk.subarray(0, n));
    }
  }

  #nextFrame(): Frame | undefined {
    const b = this.#buffer;
    if (b.length < 2) return undefined;
    let length = b[1]! & 0x7f;
    let offset = 2;
    if (length === 126) {
      if (b.length < 4) return undefined;
      length = (b[2]! << 8) | b[3]!;
      offset = 4;
    } else if (length === 127) {
      if (b.length < 10) return undefined;
      length = Number(new DataView(b.buffer, b.byteOffset + 2).getBigUint64(0));
      offset = 10;
    }
    if (b.length < offset + length) return undefined;
    const frame = {
      opcode: b[0]! & 0x0f,
      payload: b.slice(offset, offset + length),
    };
    this.#buffer = b.subarray(offset + length);
    return frame;
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

/** The code and reason of a close frame. */
export function closeOf(frame: Frame): { code: number; reason: string } {
  const p = frame.payload;
  return {
    code: p.length >= 2 ? (p[0]! << 8) | p[1]! : 1005,
    reason: new TextDecoder().decode(p.subarray(2)),
  };
}

/** The bytes of `parts`, one after the other, in a new array. */
export function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function indexOfHeadEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (
      bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 &&
      bytes[i + 3] === 10
    ) return i;
  }
  return -1;
}

/** Waits for `promise`; throws after `timeoutMs` naming `what`. */
export async function settles<T>(
  what: string,
  promise: Promise<T>,
  timeoutMs = 10_000,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`timed out waiting until ${what}`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** What {@linkcode runScript} saw. */
export interface ScriptRun {
  /** The exit code. */
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `deno run -A <script> ...args` to its end, with `env` added to the
 * environment it inherits.
 */
export async function runScript(
  script: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<ScriptRun> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(script, root).pathname, ...args],
    env,
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code,
    stdout: decoder.decode(stdout),
    stderr: decoder.decode(stderr),
  };
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
