// `deno task bench`: the project's own benchmark. Starts, on loopback, a
// raw single-process Deno baseline (bench/raw_server.ts) and a wsgate
// cluster (register.ts + bench/app.ts services), drives both with the same
// load generator (bench/load.ts, one process) and prints tables with
// absolute figures and ratios. It is a benchmark, not a test.
//
//   deno task bench                 raw Deno vs register + 2 services (~1 min)
//   deno task bench --conns 50000   50,000 idle clients on one service vs raw
//   deno task bench --scale         2, 4 and 8 services: the cost curve
//   deno task bench --cluster       only the cluster-scale run below
//
// After the comparison, `deno task bench` runs bench/cluster_scale.ts once
// (16 services, 100,000 idle clients, sendToUid/sendToGroup at 2-16
// services; several minutes): --no-cluster leaves it out, --cluster-idle N
// and --cluster-services 2,4 make it smaller (bench:scale has every flag).
//
// Options: --rounds N (1), --clients C (2000), --p2p N (50000),
// --bcast M (200), --size S (64), --quiet-max PCT (15), --quiet-wait S (20),
// --json FILE (also write the raw results there).
//
// Everything listens on 127.0.0.1 and every process it starts is stopped by
// its PID. The figures depend on what else runs on the machine: each phase
// reports "other" CPU (busy CPU used by no process of the benchmark).

import {
  endProgress,
  fmt,
  get,
  hardFileLimit,
  type Json,
  logFolder,
  machineLine,
  n0,
  n1,
  n2,
  num,
  parseRoundOptions,
  pidOf,
  raiseFileLimit,
  ratio,
  type RoundOptions,
  roundPhases,
  runLoad as runLoadProcess,
  setStep,
  showProgress,
  sleep,
  startCluster,
  startRaw,
  stopAll,
  stopOnSignals,
  table,
  type Target,
  utcNow,
  waitQuiet,
} from "./harness.ts";
import { parseScaleOptions, runClusterScale } from "./cluster_scale.ts";
import { CLIENTS_PER_LOADER, startIdleClients } from "./idle_clients.ts";
import { machineBusyPct, machineTicks } from "./proc.ts";

// ---------------------------------------------------------------- options

interface Options extends RoundOptions {
  mode: "compare" | "conns" | "scale" | "cluster";
  /** Run bench/cluster_scale.ts after the comparison (or alone). */
  cluster: boolean;
  /** Its flags: --idle and --services, when given. */
  clusterArgs: string[];
  conns: number;
}

function parseOptions(args: readonly string[]): Options {
  const o: Options = {
    mode: "compare",
    cluster: true,
    clusterArgs: ["--repeat", "1"],
    rounds: 1,
    clients: 2000,
    conns: 50000,
    p2p: 50000,
    bcast: 200,
    size: 64,
    quietMax: 15,
    quietWaitS: 20,
    json: undefined,
  };
  return parseRoundOptions(
    args,
    o,
    "usage: deno task bench [--scale | --conns [N] | --cluster] [--no-cluster] [--cluster-idle N] [--cluster-services 2,4,8,16] [--rounds N] [--clients C] [--p2p N] [--bcast M] [--size S] [--json FILE]",
    (flag) => {
      switch (flag.name) {
        case "--scale":
          o.mode = "scale";
          return true;
        case "--cluster":
          o.mode = "cluster";
          return true;
        case "--no-cluster":
          o.cluster = false;
          return true;
        case "--cluster-idle":
          o.clusterArgs.push("--idle", String(flag.int()));
          return true;
        case "--cluster-services":
          o.clusterArgs.push("--services", flag.value());
          return true;
        case "--conns":
          o.mode = "conns";
          if (/^\d+$/.test(flag.peek() ?? "")) o.conns = flag.int();
          return true;
        default:
          return false;
      }
    },
  );
}

// ---------------------------------------------------------------- load

/** Every result of this run, for --json. */
const allResults: Json[] = [];

async function runLoad(
  target: Target,
  args: string[],
  onProgress: (line: string) => void = showProgress,
): Promise<Json> {
  const result = await runLoadProcess(target, args, onProgress, 240);
  allResults.push(result);
  return result;
}

/**
 * Marks a target cell met (✓) or missed (✗), from the ratio cell for
 * "≥ 1.00×" targets and from the ours cell for "< 10 ms" ones.
 */
function withVerdicts(rows: string[][]): string[][] {
  const value = (cell: string | undefined) =>
    Number((cell ?? "").replace(/,/g, "").replace(/[^\d.].*$/, ""));
  return rows.map((row) => {
    const target = row[4] ?? "";
    const m = /^([≥≤<]) ([\d.]+)(×| ms| µs| KiB)$/.exec(target);
    if (m === null) return row;
    const got = value(m[3] === "×" ? row[3] : row[2]);
    if (!Number.isFinite(got) || (row[m[3] === "×" ? 3 : 2] ?? "-") === "-") {
      return row;
    }
    const limit = Number(m[2]);
    const met = m[1] === "≥"
      ? got >= limit
      : m[1] === "≤"
      ? got <= limit
      : got < limit;
    const out = [...row];
    out[4] = `${target} ${met ? "✓" : "✗"}`;
    return out;
  });
}

/** Memory per client in KiB: RSS growth of the servers while connecting. */
function kibPerClient(r: Json, servers: string[]): number | undefined {
  const before = get(r, "connect", "rss_kib_before") as Json | undefined;
  const after = get(r, "connect", "rss_kib_after") as Json | undefined;
  const clients = num(r.clients);
  if (!before || !after || clients === undefined) return undefined;
  let growth = 0;
  for (const s of servers) {
    const a = num(after[s]), b = num(before[s]);
    if (a === undefined || b === undefined) return undefined;
    growth += a - b;
  }
  return growth / clients;
}

function other(r: Json, phase: string): string {
  return fmt(get(r, phase, "cpu_pct", "other"), n0, "%");
}

// ---------------------------------------------------------------- modes

function header(o: Options, busy: number): string {
  return `wsgate bench (${o.mode}), ${utcNow()}; ${machineLine()}; Deno ${Deno.version.deno}; machine busy ${busy}% before the start`;
}

async function compare(o: Options): Promise<string> {
  const phases = roundPhases(o);
  const rounds: { raw: Json; ours: Json }[] = [];
  for (let round = 1; round <= o.rounds; round++) {
    const tag = o.rounds > 1 ? ` (round ${round}/${o.rounds})` : "";
    setStep(`raw Deno baseline${tag}`);
    await waitQuiet(o.quietMax, o.quietWaitS);
    const raw = await startRaw();
    const rawResult = await runLoad(raw, phases);
    await stopAll();
    setStep(`wsgate, register + 2 services${tag}`);
    await waitQuiet(o.quietMax, o.quietWaitS);
    const ours = await startCluster(2);
    const oursResult = await runLoad(ours, [
      ...phases,
      "--count",
      "200",
      "--stats",
    ]);
    await stopAll();
    rounds.push({ raw: rawResult, ours: oursResult });
  }
  endProgress();
  const out: string[] = [];
  for (const [i, { raw, ours }] of rounds.entries()) {
    if (o.rounds > 1) out.push(`\nRound ${i + 1}`);
    for (const r of [raw, ours]) {
      if (r.error) out.push(`${r.label ?? "?"}: ERROR ${r.error}`);
    }
    const row = (
      name: string,
      path: string[],
      f: Intl.NumberFormat,
      unit: string,
      target: string,
      noise: string,
    ) => [
      name,
      fmt(get(raw, ...path), f, unit),
      fmt(get(ours, ...path), f, unit),
      ratio(get(ours, ...path), get(raw, ...path)),
      target,
      `${other(raw, noise)} / ${other(ours, noise)}`,
    ];
    const memRaw = kibPerClient(raw, ["raw"]);
    const memOurs = kibPerClient(ours, ["s1", "s2"]);
    const rows = [
      row(
        `broadcast deliveries/s (best of W=4,16: raw W${
          fmt(get(raw, "bcast", "window"))
        }, ours W${fmt(get(ours, "bcast", "window"))})`,
        ["bcast", "msgs_per_s"],
        n0,
        "",
        "≥ 1.00×",
        "bcast",
      ),
      row(
        "broadcast server CPU per delivery",
        ["bcast", "server_cpu_us_per_msg"],
        n2,
        " µs",
        "≤ 1.20×",
        "bcast",
      ),
      row(
        "one broadcast in flight: p50 until all clients have it",
        ["bcast_lat", "all_p50_ms"],
        n2,
        " ms",
        "≤ 1.10×",
        "bcast_lat",
      ),
      row(
        "one broadcast in flight: p99 until all clients have it",
        ["bcast_lat", "all_p99_ms"],
        n2,
        " ms",
        "",
        "bcast_lat",
      ),
      row(
        "point-to-point msgs/s (ours: every one crosses services)",
        ["p2p", "msgs_per_s"],
        n0,
        "",
        "≥ 0.80×",
        "p2p",
      ),
      row("point-to-point p50", ["p2p", "p50_ms"], n2, " ms", "", "p2p"),
      row(
        "point-to-point p99",
        ["p2p", "p99_ms"],
        n2,
        " ms",
        "< 10 ms",
        "p2p",
      ),
      row(
        "point-to-point server CPU per message",
        ["p2p", "server_cpu_us_per_msg"],
        n1,
        " µs",
        "≤ 25 µs",
        "p2p",
      ),
      row(
        "connect: clients accepted per second",
        ["connect", "per_s"],
        n0,
        "",
        "",
        "connect",
      ),
      [
        "memory per connection (server RSS growth / clients)",
        fmt(memRaw, n1, " KiB"),
        fmt(memOurs, n1, " KiB"),
        ratio(memOurs, memRaw),
        "see --conns",
        "",
      ],
      [
        "getAllClientCount: calls/s one at a time, p50",
        "-",
        `${fmt(get(ours, "count", "calls_per_s"))}, ${
          fmt(get(ours, "count", "p50_ms"), n2, " ms")
        }`,
        "",
        "",
        `- / ${other(ours, "count")}`,
      ],
      [
        "RPCs: deliveries per p2p message; per broadcast",
        "-",
        `${
          fmt(
            (num(get(ours, "p2p", "rpc", "deliveries")) ?? NaN) /
              (num(get(ours, "p2p", "messages")) ?? NaN),
            n2,
          )
        }; ${
          fmt(
            (num(get(ours, "bcast_w4", "rpc", "deliveries")) ?? NaN) /
              (num(get(ours, "bcast_w4", "broadcasts")) ?? NaN),
            n2,
          )
        }`,
        "",
        "1; 1 per peer",
        "",
      ],
    ];
    out.push(
      table(
        [
          `${o.clients} clients, ${o.size} B`,
          "raw Deno (1 process)",
          "wsgate (register + 2 services)",
          "ratio",
          "target",
          "other CPU raw / ours",
        ],
        withVerdicts(rows),
      ),
    );
    const batches = num(get(ours, "p2p", "rpc", "batches"));
    const deliveries = num(get(ours, "p2p", "rpc", "deliveries"));
    if (batches && deliveries) {
      out.push(
        `point-to-point: ${
          n1.format(deliveries / batches)
        } deliveries per batch to a peer on average`,
      );
    }
  }
  return out.join("\n");
}

interface Held {
  /** Clients accepted per second, all load processes together. */
  perS: number;
  cpuUsPerConnect: number | undefined;
  rssBefore: number;
  rssAfter: number;
  other: number | undefined;
  errors: string[];
}

/**
 * Connects `clients` idle clients to one server from as many load
 * processes as the file limit needs, and measures the server while every
 * client is connected.
 */
async function hold(
  target: Target,
  pid: number,
  clients: number,
): Promise<Held> {
  const rssOf = () =>
    Number(
      /VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))
        ?.[1],
    );
  const ticksOf = () => {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(f[11]) + Number(f[12]);
  };
  const rssBefore = rssOf();
  const ticks0 = ticksOf();
  const machine0 = machineTicks();
  const t0 = performance.now();
  const idle = startIdleClients(target, clients, {
    holdS: 10 + Math.ceil(clients / CLIENTS_PER_LOADER),
    onProgress: (n, total) => showProgress(`${n}/${total} connected`),
  });
  await idle.connected.catch(() => {});
  const connectS = (performance.now() - t0) / 1000;
  const ticks1 = ticksOf();
  const machine1 = machineTicks();
  await sleep(2000);
  const rssAfter = rssOf();
  const results = await idle.done;
  allResults.push(...results);
  const busyTicks = machine1.busy - machine0.busy;
  const ourTicks = ticks1 - ticks0;
  return {
    perS: Math.round(clients / connectS),
    cpuUsPerConnect: ourTicks * 10_000 / clients,
    rssBefore,
    rssAfter,
    // Machine CPU not used by the server, in % of one core; it includes
    // the load generators.
    other: Math.round((busyTicks - ourTicks) / connectS),
    errors: results.filter((r) => r.error).map((r) => String(r.error)),
  };
}

async function conns(o: Options): Promise<string> {
  const hard = hardFileLimit();
  raiseFileLimit(hard);
  // The server holds one file per client, plus its own few.
  const clients = Math.min(o.conns, hard - 500);
  setStep(`raw Deno baseline, ${clients} idle clients`);
  await waitQuiet(o.quietMax, o.quietWaitS);
  const rawTarget = await startRaw();
  const raw = await hold(rawTarget, pidOf("raw"), clients);
  await stopAll();
  setStep(`wsgate, 1 service, ${clients} idle clients`);
  await waitQuiet(o.quietMax, o.quietWaitS);
  const oursTarget = await startCluster(1);
  const ours = await hold(oursTarget, pidOf("service1"), clients);
  await stopAll();
  endProgress();
  const out: string[] = [];
  if (clients < o.conns) {
    out.push(
      `NOTE: ${o.conns} clients were asked for, but this machine caps open files per process at ${hard} (hard limit; raising it needs CAP_SYS_RESOURCE), so one server can hold ${clients}.`,
    );
  }
  for (const [name, r] of [["raw", raw], ["ours", ours]] as const) {
    for (const e of r.errors) out.push(`${name}: ERROR ${e}`);
  }
  const perClient = (r: Held) => (r.rssAfter - r.rssBefore) / clients;
  out.push(table(
    [
      `${clients} idle clients`,
      "raw Deno",
      "wsgate, 1 service",
      "ratio",
      "target",
    ],
    withVerdicts([
      [
        "accepted per second (connect + id greeting)",
        fmt(raw.perS),
        fmt(ours.perS),
        ratio(ours.perS, raw.perS),
        "≥ 0.80×",
      ],
      [
        "server CPU per accepted client",
        fmt(raw.cpuUsPerConnect, n0, " µs"),
        fmt(ours.cpuUsPerConnect, n0, " µs"),
        ratio(ours.cpuUsPerConnect, raw.cpuUsPerConnect),
        "",
      ],
      [
        "resident memory per client (RSS growth / clients)",
        fmt(perClient(raw), n1, " KiB"),
        fmt(perClient(ours), n1, " KiB"),
        ratio(perClient(ours), perClient(raw)),
        "≤ 20 KiB",
      ],
      [
        "server RSS before / with every client connected",
        `${fmt(raw.rssBefore / 1024, n0)} / ${
          fmt(raw.rssAfter / 1024, n0)
        } MiB`,
        `${fmt(ours.rssBefore / 1024, n0)} / ${
          fmt(ours.rssAfter / 1024, n0)
        } MiB`,
        "",
        "",
      ],
      [
        "other CPU while connecting (load generators + noise)",
        fmt(raw.other, n0, "%"),
        fmt(ours.other, n0, "%"),
        "",
        "",
      ],
    ]),
  ));
  return out.join("\n");
}

async function scale(o: Options): Promise<string> {
  const results: { n: number; r: Json }[] = [];
  for (const n of [2, 4, 8]) {
    setStep(`wsgate, register + ${n} services`);
    await waitQuiet(o.quietMax, o.quietWaitS);
    const target = await startCluster(n);
    const r = await runLoad(target, [
      "--clients",
      String(o.clients),
      "--size",
      String(o.size),
      "--bcast",
      "100",
      "--bcast-window",
      "16",
      "--bcast-lat",
      "0",
      "--p2p",
      "20000",
      "--p2p-window",
      "200",
      "--count",
      "200",
      "--stats",
    ]);
    await stopAll();
    results.push({ n, r });
  }
  endProgress();
  const base = results[0]!.r;
  const per = (r: Json, phase: string, unit: string) =>
    (num(get(r, phase, "rpc", "deliveries")) ?? NaN) /
    (num(get(r, phase, unit)) ?? NaN);
  const rows = results.map(({ n, r }) => [
    String(n),
    fmt(get(r, "bcast", "msgs_per_s")),
    fmt(get(r, "bcast", "server_cpu_us_per_msg"), n2, " µs"),
    ratio(
      get(r, "bcast", "server_cpu_us_per_msg"),
      get(base, "bcast", "server_cpu_us_per_msg"),
    ),
    fmt(per(r, "bcast", "broadcasts"), n2),
    fmt(get(r, "p2p", "msgs_per_s")),
    fmt(get(r, "p2p", "server_cpu_us_per_msg"), n1, " µs"),
    fmt(per(r, "p2p", "messages"), n2),
    fmt(
      (num(get(r, "p2p", "rpc", "deliveries")) ?? NaN) /
        (num(get(r, "p2p", "rpc", "batches")) ?? NaN),
      n1,
    ),
    fmt(get(r, "count", "p50_ms"), n2, " ms"),
    fmt(get(r, "count", "server_cpu_us_per_call"), n0, " µs"),
    ratio(
      get(r, "count", "server_cpu_us_per_call"),
      get(base, "count", "server_cpu_us_per_call"),
    ),
    fmt(
      (num(get(r, "count", "rpc", "unaryCalls")) ?? NaN) /
        (num(get(r, "count", "calls")) ?? NaN),
      n2,
    ),
    `${other(r, "bcast")} / ${other(r, "p2p")} / ${other(r, "count")}`,
  ]);
  const out: string[] = [];
  for (const { n, r } of results) {
    if (r.error) out.push(`${n} services: ERROR ${r.error}`);
    const answer = get(r, "count", "answer");
    if (get(r, "count", "correct") === false) {
      out.push(`${n} services: getAllClientCount answered ${answer}`);
    }
  }
  out.push(table(
    [
      "services",
      "bcast deliv/s",
      "bcast CPU/deliv",
      "vs 2",
      "RPC deliv/bcast",
      "p2p msgs/s",
      "p2p CPU/msg",
      "RPC deliv/p2p",
      "deliv/batch",
      "count p50",
      "count CPU/call",
      "vs 2",
      "unary RPCs/count",
      "other CPU bcast/p2p/count",
    ],
    rows,
  ));
  out.push(
    `${o.clients} clients spread over the services; broadcast 100 × ${o.size} B (W16), p2p 20,000 (W200, each to a client on the next service), getAllClientCount 200 calls one at a time. RPC columns count what the services sent to each other (the wsgate_peer_* counters of each service's /metrics).`,
  );
  return out.join("\n");
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  let o: Options;
  try {
    o = parseOptions(Deno.args);
  } catch (error) {
    console.error(`bench: ${(error as Error).message}`);
    Deno.exit(2);
  }
  const logs = await logFolder();
  raiseFileLimit(20_000);
  const undoSignals = stopOnSignals();
  setStep("checking that the machine is quiet");
  const busy = await machineBusyPct();
  let report: string;
  try {
    report = o.mode === "conns"
      ? await conns(o)
      : o.mode === "scale"
      ? await scale(o)
      : o.mode === "compare"
      ? await compare(o)
      : "";
    if (o.mode === "cluster" || (o.mode === "compare" && o.cluster)) {
      const cluster = await runClusterScale(parseScaleOptions([
        ...o.clusterArgs,
        "--quiet-max",
        String(o.quietMax),
        "--quiet-wait",
        String(o.quietWaitS),
      ]));
      allResults.push(...cluster.points as unknown as Json[]);
      report = report === "" ? cluster.text : `${report}\n\n${cluster.text}`;
    }
  } finally {
    await stopAll();
    undoSignals();
  }
  endProgress();
  console.log(`${header(o, busy)}\n\n${report}\n\nlogs: ${logs}`);
  if (o.json !== undefined) {
    await Deno.writeTextFile(o.json, JSON.stringify(allResults, null, 2));
  }
}

if (import.meta.main) {
  await main();
}
