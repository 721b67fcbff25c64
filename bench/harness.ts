// What the benchmark drivers (bench/main.ts, bench/peers.ts,
// bench/protocol.ts) share: a progress line, child processes that are
// stopped by their PID, the raw Deno and wsgate targets, a bounded wait for
// a quiet machine, their common options, a run of the load generator, and
// table formatting.
//
// Everything listens on 127.0.0.1; ports are chosen by the kernel (port 0)
// or probed free just before use.

import { machineBusyPct } from "./proc.ts";

/** The repository root (the children run there). */
export const root = new URL("..", import.meta.url).pathname;

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------- progress

const startedAt = performance.now();
const isTty = Deno.stderr.isTerminal();
let step = "";
let lastShown = 0;

function elapsed(): string {
  const s = Math.round((performance.now() - startedAt) / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** Shows `detail` on the progress line of the current step. */
export function showProgress(detail: string): void {
  const line = `[${elapsed()}] ${step}${detail ? `: ${detail}` : ""}`;
  if (isTty) {
    Deno.stderr.writeSync(
      new TextEncoder().encode(`\r\x1b[2K${line.slice(0, 150)}`),
    );
  } else if (performance.now() - lastShown > 2000) {
    console.error(line);
    lastShown = performance.now();
  }
}

/** Starts a new step of the progress line. */
export function setStep(name: string): void {
  if (isTty && step !== "") console.error("");
  step = name;
  lastShown = 0;
  showProgress("");
}

/** Prints a message on a line of its own, below the progress line. */
export function note(text: string): void {
  if (isTty) Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[2K"));
  console.error(text);
  lastShown = 0;
}

export function endProgress(): void {
  if (isTty) console.error("");
}

// ---------------------------------------------------------------- processes

let logDir = "";

/** The folder of this run's logs (made on first use). */
export async function logFolder(): Promise<string> {
  if (logDir === "") {
    logDir = await Deno.makeTempDir({ prefix: "wsgate-bench-" });
  }
  return logDir;
}

/** A child process started by a driver; it is stopped by its PID. */
export class Child {
  readonly name: string;
  readonly process: Deno.ChildProcess;
  /** The stdout line that said it was ready. */
  readonly line: string;

  constructor(name: string, process: Deno.ChildProcess, line: string) {
    this.name = name;
    this.process = process;
    this.line = line;
  }

  get pid(): number {
    return this.process.pid;
  }

  /** SIGTERM, then SIGKILL after 5 s; resolves once it is gone. */
  async stop(): Promise<void> {
    try {
      this.process.kill("SIGTERM");
    } catch { /* gone already */ }
    const timer = setTimeout(() => {
      try {
        this.process.kill("SIGKILL");
      } catch { /* gone already */ }
    }, 5000);
    await this.process.status;
    clearTimeout(timer);
  }
}

const children = new Set<Child>();

export interface SpawnOptions {
  /** The program; default this Deno. */
  command?: string;
  /** Working folder; default the repository root. */
  cwd?: string;
  /** The stdout line that says the child is ready; default any line. */
  ready?: RegExp;
  /** How long to wait for that line (default 30 s). */
  timeoutMs?: number;
}

/**
 * Starts a child, logs its stdout and stderr to `<logs>/<name>.log`, and
 * waits (bounded) for its ready line. A child that does not get ready is
 * killed and the call throws.
 */
export async function spawn(
  name: string,
  args: string[],
  options: SpawnOptions = {},
): Promise<Child> {
  const folder = await logFolder();
  const logPath = `${folder}/${name}.log`;
  const log = await Deno.open(logPath, {
    create: true,
    write: true,
    truncate: true,
  });
  const process = new Deno.Command(options.command ?? Deno.execPath(), {
    args,
    cwd: options.cwd ?? root,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const encoder = new TextEncoder();
  const writeLog = (text: string) => {
    try {
      log.writeSync(encoder.encode(text));
    } catch { /* the log is closed */ }
  };
  process.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (text) => writeLog(text) }),
  ).catch(() => {});
  const ready = options.ready ?? /./;
  let found: string | undefined;
  let signal!: (line: string | undefined) => void;
  const readyLine = new Promise<string | undefined>((r) => signal = r);
  // Reads stdout to its end, so that the child never blocks on it.
  (async () => {
    let rest = "";
    for await (
      const text of process.stdout.pipeThrough(new TextDecoderStream())
    ) {
      writeLog(text);
      if (found !== undefined) continue;
      rest += text;
      let at;
      while (found === undefined && (at = rest.indexOf("\n")) >= 0) {
        const line = rest.slice(0, at);
        rest = rest.slice(at + 1);
        if (ready.test(line)) signal(found = line);
      }
    }
    signal(undefined);
  })().catch(() => signal(undefined)).finally(() => {
    process.status.then(() => log.close()).catch(() => {});
  });
  const timeoutMs = options.timeoutMs ?? 30_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const line = await Promise.race([
    readyLine,
    new Promise<undefined>((r) =>
      timer = setTimeout(() => r(undefined), timeoutMs)
    ),
  ]);
  clearTimeout(timer);
  const child = new Child(name, process, line ?? "");
  if (line === undefined) {
    await child.stop();
    throw new Error(`${name} did not get ready (see ${logPath})`);
  }
  children.add(child);
  return child;
}

export function pidOf(name: string): number {
  for (const child of children) if (child.name === name) return child.pid;
  throw new Error(`no process named ${name}`);
}

/** Load generator processes still running. */
const loads = new Set<Deno.ChildProcess>();

/** Stops every child started so far, load generators first. */
export async function stopAll(): Promise<void> {
  for (const load of loads) {
    try {
      load.kill("SIGKILL");
    } catch { /* gone */ }
  }
  const all = [...children];
  children.clear();
  await Promise.all(all.map((child) => child.stop()));
}

/** Stops every child on SIGINT or SIGTERM, then exits; returns an undo. */
export function stopOnSignals(): () => void {
  const stop = () => {
    endProgress();
    stopAll().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  return () => {
    Deno.removeSignalListener("SIGINT", stop);
    Deno.removeSignalListener("SIGTERM", stop);
  };
}

/** A free TCP port on 127.0.0.1 (free now; use it at once). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

// ---------------------------------------------------------------- targets

/** Servers for the load generator. */
export interface Target {
  label: string;
  /** WebSocket URLs; the clients go round-robin over them. */
  urls: string[];
  /** name:pid of every server process, for --pids. */
  pids: string;
  /** --protocol of the load generator. */
  protocol: "app" | "socketio" | "wsgate.v1";
  /**
   * For a cluster: ms from the first service's start until every service
   * had printed its listening line, and until every one saw all services.
   */
  timing?: { readyMs: number; joinedMs: number };
}

/** The raw Deno ceiling: one process. */
export async function startRaw(): Promise<Target> {
  const raw = await spawn("raw", [
    "run",
    "--allow-net=127.0.0.1",
    "bench/raw_server.ts",
    "--port",
    "0",
  ]);
  const { port } = JSON.parse(raw.line) as { port: number };
  return {
    label: "raw Deno",
    urls: [`ws://127.0.0.1:${port}/`],
    pids: `raw:${raw.pid}`,
    protocol: "app",
  };
}

/** How {@linkcode startCluster} starts a cluster. */
export interface ClusterOptions {
  /**
   * The folder of the code under test: register.ts and service.ts are run
   * from there (default: this repository), always with this repository's
   * bench/app.ts.
   */
  code?: string;
  /** Start the services all at once instead of one after the other. */
  parallel?: boolean;
  /** How long every service may take to see all the others (20 s). */
  joinTimeoutMs?: number;
  /** More flags for every service (none). */
  serviceArgs?: string[];
}

/** A register and `services` services running bench/app.ts. */
export async function startCluster(
  services: number,
  options: ClusterOptions = {},
): Promise<Target> {
  const cwd = options.code ?? root;
  const register = await spawn("register", [
    "run",
    "-A",
    "register.ts",
    "--port",
    "0",
    "--log-level",
    "warn",
  ], { ready: /listening on /, cwd });
  const address = /listening on (\S+)/.exec(register.line)?.[1];
  if (address === undefined) {
    throw new Error(`unexpected register line: ${register.line}`);
  }
  const urls: string[] = [];
  const pids = [`register:${register.pid}`];
  const start = (i: number) =>
    spawn(`service${i}`, [
      "run",
      "-A",
      "service.ts",
      "--app",
      `${root}bench/app.ts`,
      "--register",
      address,
      "--hostname",
      "127.0.0.1",
      "--port",
      "0",
      "--rpc-port",
      "0",
      "--log-level",
      "warn",
      ...options.serviceArgs ?? [],
    ], { ready: / on http:\/\//, cwd, timeoutMs: 30_000 + 2000 * services });
  const t0 = performance.now();
  const started: Child[] = [];
  if (options.parallel) {
    const all = await Promise.allSettled(
      Array.from({ length: services }, (_, i) => start(i + 1)),
    );
    const failed = all.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    for (const r of all) {
      started.push((r as PromiseFulfilledResult<Child>).value);
    }
  } else {
    for (let i = 1; i <= services; i++) started.push(await start(i));
  }
  const readyMs = performance.now() - t0;
  for (const [k, service] of started.entries()) {
    const port = Number(/ on http:\/\/[^/]+:(\d+)\//.exec(service.line)?.[1]);
    if (!Number.isInteger(port) || port <= 0) {
      throw new Error(`unexpected service line: ${service.line}`);
    }
    urls.push(`ws://127.0.0.1:${port}/`);
    pids.push(`s${k + 1}:${service.pid}`);
  }
  await waitForMembers(urls, services, options.joinTimeoutMs ?? 20_000);
  const joinedMs = performance.now() - t0;
  return {
    timing: { readyMs, joinedMs },
    label: services === 1
      ? "wsgate, 1 service"
      : `wsgate, ${services} services`,
    urls,
    pids: pids.join(","),
    protocol: "app",
  };
}

/**
 * Waits (at most `timeoutMs`) until every service's /metrics says it is
 * ready and has all `n` services in its member list.
 */
async function waitForMembers(
  urls: string[],
  n: number,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const url of urls) {
    const metrics = new URL("/metrics", url.replace(/^ws/, "http"));
    for (;;) {
      let members = 0;
      let ready = false;
      try {
        const response = await fetch(metrics, {
          signal: AbortSignal.timeout(2000),
        });
        const text = await response.text();
        members = Number(/^wsgate_members (\S+)$/m.exec(text)?.[1] ?? 0);
        ready = /^wsgate_ready 1$/m.test(text);
      } catch { /* not answering yet */ }
      if (ready && members >= n) break;
      if (Date.now() > deadline) {
        throw new Error(`${url} sees ${members} of ${n} services`);
      }
      await sleep(100);
    }
  }
}

// ---------------------------------------------------------------- machine

/**
 * Waits, at most `maxWaitS` seconds, until the machine is less than
 * `maxBusyPct` busy over one second; returns the last busy %.
 */
export async function waitQuiet(
  maxBusyPct: number,
  maxWaitS: number,
): Promise<number> {
  let pct = 0;
  for (let waited = 0; waited < Math.max(1, maxWaitS); waited++) {
    pct = await machineBusyPct(1000);
    if (pct < maxBusyPct) return pct;
    showProgress(`waiting for a quiet machine (busy ${pct}%)`);
  }
  return pct;
}

/** Raises this process's open-file limit (children inherit it). */
export function raiseFileLimit(wanted: number): number {
  const libc = Deno.dlopen("libc.so.6", {
    getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
    setrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  });
  try {
    const RLIMIT_NOFILE = 7;
    const limits = new BigUint64Array(2);
    libc.symbols.getrlimit(RLIMIT_NOFILE, limits);
    const [soft = 0n, hard = 0n] = limits;
    const want = BigInt(wanted);
    if (soft >= want) return Number(soft);
    // As root the hard limit may rise too; otherwise up to the hard limit.
    for (const [s, h] of [[want, want > hard ? want : hard], [hard, hard]]) {
      limits[0] = s!;
      limits[1] = h!;
      if (libc.symbols.setrlimit(RLIMIT_NOFILE, limits) === 0) {
        return Number(s);
      }
    }
    return Number(soft);
  } finally {
    libc.close();
  }
}

/** The hard open-file limit of this process. */
export function hardFileLimit(): number {
  const line = Deno.readTextFileSync("/proc/self/limits").split("\n")
    .find((l) => l.startsWith("Max open files"));
  const hard = Number(line?.trim().split(/\s+/)[4]);
  return Number.isFinite(hard) ? hard : 1024;
}

// ---------------------------------------------------------------- options

/** The options of the drivers that run rounds of the load generator. */
export interface RoundOptions {
  rounds: number;
  clients: number;
  p2p: number;
  bcast: number;
  size: number;
  quietMax: number;
  quietWaitS: number;
  json: string | undefined;
}

/** A command-line flag being read, with readers of its value. */
export interface Flag {
  readonly name: string;
  /** The next argument, the flag's value; throws when there is none. */
  value(): string;
  /** The value as a whole number of at least 0; throws otherwise. */
  int(): number;
  /** The next argument, without taking it. */
  peek(): string | undefined;
}

/**
 * Reads `args` into `o`: the {@linkcode RoundOptions} flags (`--rounds N`,
 * at least 1; `--clients`, `--p2p`, `--bcast`, `--size`, `--quiet-max`,
 * `--quiet-wait`, `--json FILE`), `-h`/`--help` (prints `usage` and exits
 * 0), and every other flag through `own`, which returns false for a flag it
 * does not know. Throws on an unknown flag or a bad value.
 */
export function parseRoundOptions<O extends RoundOptions>(
  args: readonly string[],
  o: O,
  usage: string,
  own: (flag: Flag) => boolean = () => false,
): O {
  for (let i = 0; i < args.length; i++) {
    const name = args[i]!;
    const value = () => {
      const v = args[++i];
      if (v === undefined) throw new Error(`${name} needs a value`);
      return v;
    };
    const int = () => {
      const n = Number(value());
      if (!Number.isInteger(n) || n < 0) throw new Error(`bad ${name}`);
      return n;
    };
    switch (name) {
      case "--rounds":
        o.rounds = Math.max(1, int());
        break;
      case "--clients":
        o.clients = int();
        break;
      case "--p2p":
        o.p2p = int();
        break;
      case "--bcast":
        o.bcast = int();
        break;
      case "--size":
        o.size = int();
        break;
      case "--quiet-max":
        o.quietMax = int();
        break;
      case "--quiet-wait":
        o.quietWaitS = int();
        break;
      case "--json":
        o.json = value();
        break;
      case "-h":
      case "--help":
        console.log(usage);
        Deno.exit(0);
        break;
      default:
        if (!own({ name, value, int, peek: () => args[i + 1] })) {
          throw new Error(`unknown option ${name} (see --help)`);
        }
    }
  }
  return o;
}

/**
 * The load generator's measured phases at the sizes of `o`: broadcasts
 * with 4 and 16 in flight, 50 broadcasts one at a time, point-to-point
 * with 200 in flight.
 */
export function roundPhases(o: RoundOptions): string[] {
  return [
    "--clients",
    String(o.clients),
    "--size",
    String(o.size),
    "--bcast",
    String(o.bcast),
    "--bcast-window",
    "4,16",
    "--bcast-lat",
    "50",
    "--p2p",
    String(o.p2p),
    "--p2p-window",
    "200",
  ];
}

// ---------------------------------------------------------------- load

export type Json = Record<string, unknown>;

/**
 * Runs bench/load.ts against a target (killed after `timeoutS`) and
 * returns its JSON line, or an object with `error`.
 */
export async function runLoad(
  target: Target,
  args: string[],
  onProgress: (line: string) => void = showProgress,
  timeoutS = 300,
): Promise<Json> {
  const folder = await logFolder();
  const process = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "bench/load.ts",
      "--url",
      target.urls.join(","),
      "--protocol",
      target.protocol,
      "--pids",
      target.pids,
      "--label",
      target.label,
      "--deadline",
      String(Math.max(1, timeoutS - 10)),
      ...args,
    ],
    cwd: root,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  loads.add(process);
  const killer = setTimeout(() => {
    try {
      process.kill("SIGKILL");
    } catch { /* gone */ }
  }, timeoutS * 1000);
  const log = await Deno.open(`${folder}/load.log`, {
    create: true,
    append: true,
  });
  const encoder = new TextEncoder();
  const stderr = (async () => {
    let rest = "";
    for await (
      const text of process.stderr.pipeThrough(new TextDecoderStream())
    ) {
      rest += text;
      let at;
      while ((at = rest.indexOf("\n")) >= 0) {
        const line = rest.slice(0, at);
        rest = rest.slice(at + 1);
        if (line.startsWith("progress: ")) onProgress(line.slice(10));
        else await log.write(encoder.encode(line + "\n"));
      }
    }
  })();
  const out = await new Response(process.stdout).text();
  await process.status;
  loads.delete(process);
  clearTimeout(killer);
  await stderr.catch(() => {});
  log.close();
  const last = out.trim().split("\n").at(-1) ?? "";
  try {
    return JSON.parse(last) as Json;
  } catch {
    return {
      label: target.label,
      error: `the load generator printed no result (see ${folder}/load.log)`,
    };
  }
}

// ---------------------------------------------------------------- formatting

export const n0 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
export const n1 = new Intl.NumberFormat("en-US", {
  maximumFractionDigits: 1,
  minimumFractionDigits: 1,
});
export const n2 = new Intl.NumberFormat("en-US", {
  maximumFractionDigits: 2,
  minimumFractionDigits: 2,
});

/** `v` if it is a finite number. */
export function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

export function fmt(v: unknown, f = n0, unit = ""): string {
  const x = num(v);
  return x === undefined ? "-" : `${f.format(x)}${unit}`;
}

/** a ÷ b as "0.44×", or "-". */
export function ratio(a: unknown, b: unknown): string {
  const x = num(a), y = num(b);
  return x === undefined || y === undefined || y === 0
    ? "-"
    : `${n2.format(x / y)}×`;
}

/** The value at a path of keys in nested objects. */
export function get(o: unknown, ...path: string[]): unknown {
  let v = o;
  for (const key of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Json)[key];
  }
  return v;
}

/** One figure of a report table: where it is in a result, how it is shown. */
export interface Figure {
  readonly name: string;
  readonly path: readonly string[];
  readonly format: Intl.NumberFormat;
  readonly unit: string;
}

/** The median of `values`, or undefined when there are none. */
export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? sorted[mid]!
    : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** A Markdown table: first column left-aligned, the others right. */
export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) =>
    Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length))
  );
  const line = (cells: string[]) =>
    `| ${
      cells.map((c, i) =>
        i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)
      ).join(" | ")
    } |`;
  return [
    line(head),
    `|${
      widths.map((w, i) => "-".repeat(w + 1) + (i === 0 ? "-" : ":")).join("|")
    }|`,
    ...rows.map(line),
  ].join("\n");
}

/** A one-line description of the machine, for the header of a report. */
export function machineLine(): string {
  const cpus = navigator.hardwareConcurrency;
  const mem = Math.round(
    Number(
      /MemTotal:\s+(\d+)/.exec(Deno.readTextFileSync("/proc/meminfo"))?.[1] ??
        0,
    ) / 1048576,
  );
  return `${cpus} CPUs, ${mem} GiB, Linux ${Deno.osRelease()}`;
}

/** Now, as "2026-11-25 22:46 UTC". */
export function utcNow(): string {
  return `${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC`;
}
