// Test helpers: processes. A child process (register.ts, service.ts with
// a fixture app, the demo) whose first stdout line announced it, scripts
// run to their end, and what /proc tells about a process.
//
// Every child runs with the preload exit_with_parent.ts: when the test
// process dies, however it dies, the child notices that its parent is gone
// and stops (SIGTERM to itself, then exit), so that no test leaves a
// register or a service behind.

import { splitLines } from "./lines.ts";

const root = new URL("../..", import.meta.url);
const preload = new URL("./exit_with_parent.ts", import.meta.url).pathname;

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
  /**
   * The permission flags to run with, e.g. `["--allow-net=127.0.0.1"]`.
   *
   * @default {["-A"]}
   */
  permissions?: string[];
  /** Added to the environment the process inherits. */
  env?: Record<string, string>;
  /**
   * The working directory: where Deno looks for a deno.json, and what
   * relative paths in `args` are relative to.
   *
   * @default {the test's working directory}
   */
  cwd?: string;
  /**
   * A command that runs Deno, such as `["ip", "netns", "exec", NAME]` to
   * run the child in a network namespace (tests/helpers/netns.ts). It must
   * exec Deno in place, so that the child's pid and parent stay the same.
   *
   * @default {[] (Deno itself)}
   */
  prefix?: readonly string[];
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

  /**
   * Runs `deno run -A <script> ...args` (or with `options.permissions`) and
   * waits for its first line.
   */
  static async start(
    script: string,
    args: string[],
    options: ChildOptions = {},
  ): Promise<Child> {
    const {
      captureStderr = false,
      denoFlags = [],
      env = {},
      permissions = ["-A"],
      prefix = [],
    } = options;
    const process = new Deno.Command(prefix[0] ?? Deno.execPath(), {
      args: [
        ...(prefix.length === 0 ? [] : [...prefix.slice(1), Deno.execPath()]),
        "run",
        "--no-prompt",
        ...permissions,
        `--preload=${preload}`,
        ...denoFlags,
        new URL(script, root).pathname,
        ...args,
      ],
      env,
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
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
    args: [
      "run",
      "-A",
      `--preload=${preload}`,
      new URL(script, root).pathname,
      ...args,
    ],
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
