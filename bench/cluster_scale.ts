// `deno task bench:scale` (also the last part of `deno task bench`): a big
// cluster on one machine. For each size of --services (2,4,8,16) it starts
// a register and that many services (service.ts --app bench/app.ts, all at
// once) and measures:
//
//   join       ms from the start of the services until every one listens,
//              and until every one sees all the others (its /metrics);
//   uid/group  sendToUid and sendToGroup from a client of service 1 to a
//              uid / group held by one client of service 2 ("one"), and
//              held by a client on every service ("all"): sends/s, server
//              CPU per send (every service and the register), peer
//              deliveries queued per send, deliveries received by services
//              that hold nothing (where they count them);
//   online     isUidOnline one at a time, for a uid held on one other
//              service and for one nobody holds: calls/s, CPU and unary
//              peer calls per call.
//
// Then, at --big (16) services, --idle (100,000) idle WebSockets spread
// over them from as many load processes as the 20,000 open files of a
// process allow (bench/idle_clients.ts): connect rate, resident memory per
// connection (RSS of the services before and after), and the uid/group
// and online phases again with every idle client connected.
//
// --code PATH runs register.ts and service.ts of another checkout (for a
// before/after comparison, with this checkout's load generator and app).
// Every point is measured --repeat times (2), sizes interleaved; the tables
// give the median and the range. --report a.json,b.json prints the tables
// of earlier --json files side by side instead of measuring.
//
//   deno task bench:scale                          the full run (~10 min)
//   deno task bench:scale --services 2,4 --idle 4000 --sends 500 --repeat 1
//   deno task bench:scale --code ../before --label before --json b.json
//   deno task bench:scale --report b.json,a.json
//
// Everything listens on 127.0.0.1; every process it starts is stopped by
// its PID after each point, so no idle clients stay open between points.

import {
  endProgress,
  get,
  type Json,
  logFolder,
  machineLine,
  n0,
  n1,
  n2,
  num,
  raiseFileLimit,
  root,
  runLoad,
  setStep,
  showProgress,
  sleep,
  startCluster,
  stopAll,
  stopOnSignals,
  table,
  type Target,
  utcNow,
  waitQuiet,
} from "./harness.ts";
import { startIdleClients } from "./idle_clients.ts";
import { machineBusyPct, residentKib } from "./proc.ts";

// ---------------------------------------------------------------- options

/** What a cluster-scale run measures. */
export interface ScaleOptions {
  /** The checkout whose register.ts and service.ts run (this one). */
  code: string;
  /** The name of that code in the tables (its commit). */
  label: string;
  /** Cluster sizes of the uid/group series (2,4,8,16). */
  services: number[];
  /** Services of the big point (16). */
  big: number;
  /** Idle clients of the big point (100,000; 0 leaves the point out). */
  idle: number;
  /** sendToUid and sendToGroup per phase (4,000). */
  sends: number;
  /** Sends whose delivery is not complete, at most (200). */
  window: number;
  /** isUidOnline calls per phase (300). */
  online: number;
  /** Measurements of each point (2). */
  repeat: number;
  /**
   * --ping-interval-ms of the services (3,000; 0 = their default, 1,000).
   * With 16 services, 100,000 clients and other work on 2 cores, an event
   * loop can stall for more than the 2 × 1 s a register link may be
   * silent, and services then drop and re-join the register.
   */
  pingIntervalMs: number;
  /**
   * Open every link between services before the phases (a broadcast from
   * a client of each), as a cluster in use has them: the idle CPU then
   * includes the full mesh's keepalives.
   */
  openLinks: boolean;
  quietMax: number;
  quietWaitS: number;
  json: string | undefined;
  /** Earlier --json files to print instead of measuring. */
  report: string[];
}

const USAGE =
  `usage: deno task bench:scale [--code PATH] [--label TEXT] [--services 2,4,8,16]
  (--services none: only the big point) [--big 16] [--idle 100000] [--sends 4000] [--window 200] [--online 300]
  [--repeat 2] [--ping-interval-ms 3000] [--open-links] [--quiet-max 15] [--quiet-wait 20] [--json FILE]
  [--report a.json,b.json]`;

/** Parses the flags of bench:scale (also given through `deno task bench`). */
export function parseScaleOptions(args: readonly string[]): ScaleOptions {
  const o: ScaleOptions = {
    code: root,
    label: "",
    services: [2, 4, 8, 16],
    big: 16,
    idle: 100_000,
    sends: 4000,
    window: 200,
    online: 300,
    repeat: 2,
    pingIntervalMs: 3000,
    openLinks: false,
    quietMax: 15,
    quietWaitS: 20,
    json: undefined,
    report: [],
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const value = () => {
      const v = args[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    const int = (least = 0) => {
      const n = Number(value());
      if (!Number.isInteger(n) || n < least) {
        throw new Error(`${arg} needs a whole number of at least ${least}`);
      }
      return n;
    };
    switch (arg) {
      case "--code":
        o.code = value().replace(/\/?$/, "/");
        break;
      case "--label":
        o.label = value();
        break;
      case "--services":
        o.services = value().split(",").filter((v) => v !== "none").map((v) => {
          const n = Number(v);
          if (!Number.isInteger(n) || n < 2) {
            throw new Error(`--services: ${v} is not a size of at least 2`);
          }
          return n;
        });
        break;
      case "--big":
        o.big = int(2);
        break;
      case "--idle":
        o.idle = int();
        break;
      case "--sends":
        o.sends = int(1);
        break;
      case "--window":
        o.window = int(1);
        break;
      case "--online":
        o.online = int();
        break;
      case "--repeat":
        o.repeat = int(1);
        break;
      case "--ping-interval-ms":
        o.pingIntervalMs = int();
        break;
      case "--open-links":
        o.openLinks = true;
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
      case "--report":
        o.report = value().split(",").filter(Boolean);
        break;
      case "-h":
      case "--help":
        console.log(USAGE);
        Deno.exit(0);
        break;
      default:
        throw new Error(`unknown option ${arg} (see --help)`);
    }
  }
  return o;
}

// ---------------------------------------------------------------- points

/** One measured point: a cluster size, maybe with idle clients. */
export interface Point {
  code: string;
  services: number;
  repeat: number;
  idle: number;
  /** Every link between services was opened before the phases. */
  openLinks?: boolean;
  readyMs: number | undefined;
  joinedMs: number | undefined;
  /** Idle clients: ms to connect them all, RSS of each service. */
  idleConnectMs?: number;
  rssKibBefore?: number[];
  rssKibAfter?: number[];
  registerRssKib?: [number, number];
  /** The active load generator's result line. */
  load: Json;
  /** "lost register" warnings in the services' logs during the point. */
  registerLosses?: number;
  error?: string;
}

/** Short commit of a checkout, "+" when its work tree has changes. */
async function commitOf(code: string): Promise<string> {
  const git = async (...args: string[]) => {
    const out = await new Deno.Command("git", {
      args: ["-C", code, ...args],
      stdout: "piped",
      stderr: "null",
    }).output();
    return new TextDecoder().decode(out.stdout).trim();
  };
  try {
    const head = await git("rev-parse", "--short", "HEAD");
    const dirty = (await git("status", "--porcelain", "--untracked-files=no"))
      .length > 0;
    return `${head}${dirty ? "+" : ""}`;
  } catch {
    return "?";
  }
}

function servicePids(target: Target): number[] {
  return target.pids.split(",").filter((p) => /^s\d+:/.test(p)).map((p) =>
    Number(p.split(":")[1])
  );
}

function registerPid(target: Target): number {
  return Number(
    target.pids.split(",").find((p) => p.startsWith("register:"))?.split(
      ":",
    )[1],
  );
}

/** The active phases, from a client of service 1. */
function activeArgs(o: ScaleOptions, services: number): string[] {
  return [
    "--clients",
    String(2 * services),
    "--bcast",
    "0",
    "--bcast-lat",
    "0",
    "--p2p",
    "0",
    "--keyed",
    String(o.sends),
    "--keyed-window",
    String(o.window),
    "--online",
    String(o.online),
    "--stats",
    ...(o.openLinks ? ["--open-links"] : []),
    "--phase-timeout",
    "120",
  ];
}

async function measurePoint(
  o: ScaleOptions,
  services: number,
  repeat: number,
  idle: number,
): Promise<Point> {
  const point: Point = {
    code: o.label,
    services,
    repeat,
    idle,
    openLinks: o.openLinks,
    readyMs: undefined,
    joinedMs: undefined,
    load: {},
  };
  try {
    await waitQuiet(o.quietMax, o.quietWaitS);
    showProgress(`starting ${services} services`);
    const target = await startCluster(services, {
      code: o.code,
      parallel: true,
      joinTimeoutMs: 30_000 + 2000 * services,
      // Every send comes from one client: no per-client rate limit.
      serviceArgs: [
        "--rate-limit",
        "off",
        ...(o.pingIntervalMs > 0
          ? ["--ping-interval-ms", String(o.pingIntervalMs)]
          : []),
      ],
    });
    point.readyMs = target.timing?.readyMs;
    point.joinedMs = target.timing?.joinedMs;
    if (idle > 0) {
      const pids = servicePids(target);
      const register = registerPid(target);
      await sleep(1000);
      point.rssKibBefore = pids.map(residentKib);
      const registerBefore = residentKib(register);
      const clients = startIdleClients(target, idle, {
        holdS: 600,
        onProgress: (n, total) => showProgress(`${n}/${total} idle connected`),
      });
      point.idleConnectMs = await clients.connected;
      // Lets the connect burst settle (GC, the first heartbeats).
      await sleep(10_000);
      point.rssKibAfter = pids.map(residentKib);
      point.registerRssKib = [registerBefore, residentKib(register)];
    }
    point.load = await runLoad(
      target,
      activeArgs(o, services),
      showProgress,
      idle > 0 ? 900 : 300,
    );
    if (point.load.error) point.error = String(point.load.error);
  } catch (error) {
    point.error = (error as Error).message;
  } finally {
    // Load processes first, then the cluster: nothing stays open.
    await stopAll();
  }
  point.registerLosses = 0;
  const logs = await logFolder();
  for (let i = 1; i <= services; i++) {
    try {
      const text = await Deno.readTextFile(`${logs}/service${i}.log`);
      point.registerLosses += text.split("lost register").length - 1;
    } catch { /* no log */ }
  }
  return point;
}

// ---------------------------------------------------------------- tables

/** "median (min–max)" of the finite values, or "-". */
function spread(values: unknown[], f = n0, unit = ""): string {
  const xs = values.map(num).filter((x): x is number => x !== undefined)
    .sort((a, b) => a - b);
  if (xs.length === 0) return "-";
  const mid = xs.length % 2 === 1
    ? xs[(xs.length - 1) / 2]!
    : (xs[xs.length / 2 - 1]! + xs[xs.length / 2]!) / 2;
  if (xs.length === 1) return `${f.format(mid)}${unit}`;
  return `${f.format(mid)}${unit} (${f.format(xs[0]!)}–${
    f.format(xs.at(-1)!)
  })`;
}

/**
 * Points grouped by code, services and idle clients: by idle clients,
 * then size, then code in the order of the runs.
 */
function groups(points: Point[]): Point[][] {
  const codes = [...new Set(points.map((p) => p.code))];
  const out = new Map<string, Point[]>();
  for (const p of points) {
    const key = `${p.code}|${p.services}|${p.idle}|${p.openLinks === true}`;
    out.set(key, [...(out.get(key) ?? []), p]);
  }
  return [...out.values()].sort((a, b) =>
    a[0]!.idle - b[0]!.idle || a[0]!.services - b[0]!.services ||
    codes.indexOf(a[0]!.code) - codes.indexOf(b[0]!.code) ||
    Number(a[0]!.openLinks ?? false) - Number(b[0]!.openLinks ?? false)
  );
}

/**
 * The services' idle CPU in % of one core: the mean of the measurements
 * before and after the phases.
 */
function idlePct(p: Point): number | undefined {
  const xs = [
    num(get(p.load, "idle_cpu", "server_cpu_pct")),
    num(get(p.load, "idle_cpu_after", "server_cpu_pct")),
  ].filter((x): x is number => x !== undefined);
  return xs.length === 0 ? undefined : xs.reduce((a, b) => a + b) / xs.length;
}

/**
 * Server CPU per send or call of a phase, in µs, less the idle CPU over
 * the phase's time (older results: as the load generator computed it).
 */
function netCpuUs(p: Point, phase: string): number | undefined {
  const units = num(get(p.load, phase, "sends")) ??
    num(get(p.load, phase, "calls"));
  const cpu = num(get(p.load, phase, "server_cpu_s"));
  const elapsed = num(get(p.load, phase, "elapsed_s"));
  const idle = idlePct(p);
  if (
    !units || cpu === undefined || elapsed === undefined || idle === undefined
  ) {
    return num(get(p.load, phase, "server_cpu_us_per_send_net")) ??
      num(get(p.load, phase, "server_cpu_us_per_call_net"));
  }
  return (cpu - idle / 100 * elapsed) * 1e6 / units;
}

/**
 * The code of a point, whether its links were opened first and, with
 * `idle`, its idle clients.
 */
function codeOf(p: Point, idle = false): string {
  return [
    p.code,
    p.openLinks ? "links open" : "",
    idle && p.idle > 0 ? `${n0.format(p.idle)} idle` : "",
  ].filter(Boolean).join(", ");
}

/** Per-send value of a keyed phase. */
function perSend(p: Point, phase: string, value: number | undefined) {
  const sends = num(get(p.load, phase, "sends"));
  return value === undefined || !sends ? undefined : value / sends;
}

/**
 * Deliveries received per send by services that hold nothing: every URL
 * but 1 (the sender's) and 2 (the holder's) in the "one" phases.
 */
function idleReceived(p: Point, phase: string): number | undefined {
  const byUrl = get(p.load, phase, "rpc", "received_by_url");
  if (!Array.isArray(byUrl)) return undefined;
  const rest = byUrl.slice(2).map(num);
  if (rest.length === 0 || rest.some((x) => x === undefined)) {
    return undefined;
  }
  return perSend(p, phase, rest.reduce((a, b) => a! + b!, 0));
}

function keyedTable(all: Point[][], title: string): string {
  const rows: string[][] = [];
  for (const g of all) {
    for (
      const [phase, what] of [
        ["uid_one", "sendToUid, held on 1 other"],
        ["group_one", "sendToGroup, held on 1 other"],
        ["uid_all", "sendToUid, held on every service"],
        ["group_all", "sendToGroup, held on every service"],
      ] as const
    ) {
      const first = g[0]!;
      rows.push([
        codeOf(first, true),
        String(first.services),
        what,
        spread(g.map((p) => get(p.load, phase, "sends_per_s"))),
        spread(
          g.map((p) => netCpuUs(p, phase)),
          n0,
          " µs",
        ),
        spread(
          g.map((p) =>
            perSend(p, phase, num(get(p.load, phase, "rpc", "deliveries")))
          ),
          n2,
        ),
        phase.endsWith("_one")
          ? spread(g.map((p) => idleReceived(p, phase)), n2)
          : "",
        spread(g.map((p) => get(p.load, phase, "all_p50_ms")), n1, " ms"),
        spread(g.map((p) => get(p.load, phase, "cpu_pct", "other")), n0, "%"),
      ]);
    }
  }
  return `${title}\n\n${
    table([
      "code",
      "services",
      "operation",
      "sends/s",
      "server CPU per send (idle CPU subtracted)",
      "peer deliveries per send",
      "received by services holding nothing, per send",
      "p50 until all holders have it",
      "other CPU",
    ], rows)
  }`;
}

function onlineTable(all: Point[][], title: string): string {
  const rows: string[][] = [];
  for (const g of all) {
    for (
      const [phase, what] of [
        ["online_one", "held on 1 other service"],
        ["online_none", "held by nobody"],
      ] as const
    ) {
      const calls = (p: Point) => num(get(p.load, phase, "calls"));
      rows.push([
        codeOf(g[0]!, true),
        String(g[0]!.services),
        what,
        spread(g.map((p) => get(p.load, phase, "calls_per_s"))),
        spread(g.map((p) => get(p.load, phase, "p50_ms")), n2, " ms"),
        spread(
          g.map((p) => netCpuUs(p, phase)),
          n0,
          " µs",
        ),
        spread(
          g.map((p) => {
            const n = calls(p);
            const unary = num(get(p.load, phase, "rpc", "unaryCalls"));
            return n && unary !== undefined ? unary / n : undefined;
          }),
          n2,
        ),
        spread(g.map((p) => get(p.load, phase, "cpu_pct", "other")), n0, "%"),
      ]);
    }
  }
  return `${title}\n\n${
    table([
      "code",
      "services",
      "isUidOnline, uid",
      "calls/s (one at a time)",
      "p50",
      "server CPU per call (idle CPU subtracted)",
      "peer calls per call",
      "other CPU",
    ], rows)
  }`;
}

function joinTable(all: Point[][]): string {
  const rows = all.map((g) => [
    codeOf(g[0]!),
    String(g[0]!.services),
    [
      g[0]!.idle > 0 ? `${n0.format(g[0]!.idle)} idle` : "",
      g[0]!.openLinks ? "all links open" : "",
    ].filter(Boolean).join(", "),
    spread(g.map((p) => p.readyMs), n0, " ms"),
    spread(g.map((p) => p.joinedMs), n0, " ms"),
    spread(
      g.map((p) =>
        p.joinedMs !== undefined && p.readyMs !== undefined
          ? p.joinedMs - p.readyMs
          : undefined
      ),
      n0,
      " ms",
    ),
    spread(
      g.map(idlePct),
      n1,
      "%",
    ),
  ]);
  return `Cluster join (services started all at once, on 2 cores)\n\n${
    table([
      "code",
      "services",
      "",
      "until all listen",
      "until all see all",
      "difference",
      "idle server CPU (all services)",
    ], rows)
  }`;
}

function idleTable(all: Point[][]): string {
  const rows: string[][] = [];
  for (const g of all) {
    if (g[0]!.idle === 0) continue;
    const sum = (xs: number[] | undefined) =>
      xs === undefined ? undefined : xs.reduce((a, b) => a + b, 0);
    const perConn = (p: Point) => {
      const a = sum(p.rssKibAfter), b = sum(p.rssKibBefore);
      return a === undefined || b === undefined ? undefined : (a - b) / p.idle;
    };
    rows.push([
      codeOf(g[0]!),
      String(g[0]!.services),
      n0.format(g[0]!.idle),
      spread(g.map((p) => sum(p.rssKibBefore)! / 1024), n0, " MiB"),
      spread(g.map((p) => sum(p.rssKibAfter)! / 1024), n0, " MiB"),
      spread(g.map(perConn), n1, " KiB"),
      spread(
        g.map((p) =>
          p.rssKibAfter && p.rssKibAfter.length > 0
            ? Math.max(...p.rssKibAfter) / 1024
            : undefined
        ),
        n0,
        " MiB",
      ),
      spread(
        g.map((p) =>
          p.idleConnectMs ? p.idle / (p.idleConnectMs / 1000) : undefined
        ),
      ),
      spread(
        g.map((p) =>
          p.registerRssKib
            ? (p.registerRssKib[1] - p.registerRssKib[0]) / 1024
            : undefined
        ),
        n1,
        " MiB",
      ),
    ]);
  }
  return `Idle connections\n\n${
    table([
      "code",
      "services",
      "idle clients",
      "services' RSS before",
      "with all connected",
      "per connection",
      "largest service",
      "connected per second",
      "register RSS growth",
    ], rows)
  }`;
}

/** The tables of a set of points (one or more runs). */
export function report(points: Point[]): string {
  const out: string[] = [];
  for (const p of points) {
    if (p.error) {
      out.push(
        `ERROR ${p.code}, ${p.services} services${
          p.idle ? `, ${p.idle} idle` : ""
        }, repeat ${p.repeat}: ${p.error}`,
      );
    }
    for (const phase of ["uid_one", "group_one", "uid_all", "group_all"]) {
      const misrouted = num(get(p.load, phase, "misrouted")) ?? 0;
      const dups = num(get(p.load, phase, "dups")) ?? 0;
      if (misrouted + dups > 0) {
        out.push(
          `WRONG ${p.code}, ${p.services} services, ${phase}: ${misrouted} misrouted, ${dups} duplicated`,
        );
      }
    }
    for (const phase of ["online_one", "online_none"]) {
      const wrong = num(get(p.load, phase, "wrong")) ?? 0;
      if (wrong > 0) {
        out.push(
          `WRONG ${p.code}, ${p.services} services, ${phase}: ${wrong} wrong answers`,
        );
      }
    }
  }
  const losses = points.filter((p) => (p.registerLosses ?? 0) > 0);
  if (losses.length > 0) {
    out.push(
      `Register links lost and re-joined (a service's event loop stalled past 2 × --ping-interval-ms): ${
        losses.map((p) =>
          `${p.registerLosses} at ${p.code}, ${p.services} services${
            p.idle ? `, ${p.idle} idle` : ""
          } (repeat ${p.repeat})`
        ).join("; ")
      }`,
    );
  }
  const all = groups(points);
  const series = all.filter((g) => g[0]!.idle === 0);
  const big = all.filter((g) => g[0]!.idle > 0);
  out.push(joinTable(all));
  if (big.length > 0) out.push(idleTable(big));
  if (series.length > 0) {
    out.push(keyedTable(series, "sendToUid / sendToGroup (no idle clients)"));
  }
  if (big.length > 0) {
    out.push(keyedTable(big, "sendToUid / sendToGroup with the idle clients"));
  }
  out.push(onlineTable(all, "isUidOnline"));
  return out.join("\n\n");
}

// ---------------------------------------------------------------- run

/** Measures every point of `o` and returns the report. */
export async function runClusterScale(
  o: ScaleOptions,
): Promise<{ text: string; points: Point[] }> {
  raiseFileLimit(20_000);
  if (o.label === "") o.label = await commitOf(o.code);
  const points: Point[] = [];
  const total = o.repeat * (o.services.length + (o.idle > 0 ? 1 : 0));
  for (let r = 1; r <= o.repeat; r++) {
    for (const n of o.services) {
      setStep(
        `cluster scale ${o.label}: ${n} services (${
          points.length + 1
        }/${total})`,
      );
      points.push(await measurePoint(o, n, r, 0));
    }
    if (o.idle > 0) {
      setStep(
        `cluster scale ${o.label}: ${o.big} services, ${o.idle} idle (${
          points.length + 1
        }/${total})`,
      );
      points.push(await measurePoint(o, o.big, r, o.idle));
    }
  }
  endProgress();
  const head =
    `wsgate cluster scale, ${o.label} (${o.code}), ${utcNow()}; ${machineLine()}; Deno ${Deno.version.deno}; ${o.sends} sends per phase (window ${o.window}), ${o.online} isUidOnline calls, repeat ${o.repeat}; services with --rate-limit off${
      o.pingIntervalMs > 0 ? ` --ping-interval-ms ${o.pingIntervalMs}` : ""
    }`;
  return { text: `${head}\n\n${report(points)}`, points };
}

async function main(): Promise<void> {
  let o: ScaleOptions;
  try {
    o = parseScaleOptions(Deno.args);
  } catch (error) {
    console.error(`bench:scale: ${(error as Error).message}`);
    Deno.exit(2);
  }
  if (o.report.length > 0) {
    const points: Point[] = [];
    for (const file of o.report) {
      points.push(...JSON.parse(await Deno.readTextFile(file)) as Point[]);
    }
    console.log(report(points));
    return;
  }
  const logs = await logFolder();
  const undoSignals = stopOnSignals();
  const busy = await machineBusyPct();
  try {
    const { text, points } = await runClusterScale(o);
    console.log(
      `${text}\n\nmachine busy ${busy}% before the start; logs: ${logs}`,
    );
    if (o.json !== undefined) {
      await Deno.writeTextFile(o.json, JSON.stringify(points, null, 2));
    }
  } finally {
    await stopAll();
    undoSignals();
  }
}

if (import.meta.main) {
  await main();
}
