// `deno task bench:protocol`: what the wsgate.v1 client protocol
// (docs/protocol.md: sequence numbers on every frame, acks, sessions kept
// for recovery) costs next to plain WebSocket clients, on the same cluster
// set-up: a register and two bench/app.ts services, driven by the same load
// generator (bench/load.ts) once with `--protocol app` (plain clients) and
// once with `--protocol wsgate.v1`. Rounds alternate, A B A B ..., each run
// on a freshly started cluster, and the table gives every round, the median
// and the spread (min-max), because on a small shared machine one run
// proves little. It is a benchmark, not a test.
//
//   deno task bench:protocol                 3 rounds of plain, v1 (~4 min)
//   deno task bench:protocol --rounds 5 --clients 1000 --p2p 20000
//   deno task bench:protocol --smoke         routing and sequence check of both
//
// Options: --rounds N (3), --clients C (2000), --p2p N (50000), --bcast M
// (200), --size S (64), --quiet-max PCT (15), --quiet-wait S (20), --json
// FILE (also write the raw results there), --smoke.

import {
  endProgress,
  type Figure,
  fmt,
  get,
  type Json,
  logFolder,
  machineLine,
  median,
  n0,
  n1,
  n2,
  num,
  parseRoundOptions,
  raiseFileLimit,
  type RoundOptions,
  roundPhases,
  runLoad,
  setStep,
  startCluster,
  stopAll,
  stopOnSignals,
  table,
  utcNow,
  waitQuiet,
} from "./harness.ts";
import { machineBusyPct } from "./proc.ts";

interface Options extends RoundOptions {
  smoke: boolean;
}

function parseOptions(args: readonly string[]): Options {
  const o: Options = {
    rounds: 3,
    clients: 2000,
    p2p: 50000,
    bcast: 200,
    size: 64,
    quietMax: 15,
    quietWaitS: 20,
    json: undefined,
    smoke: false,
  };
  return parseRoundOptions(
    args,
    o,
    "usage: deno task bench:protocol [--rounds N] [--clients C] [--p2p N] [--bcast M] [--size S] [--quiet-max PCT] [--quiet-wait S] [--json FILE] [--smoke]",
    (flag) => {
      if (flag.name !== "--smoke") return false;
      o.smoke = true;
      return true;
    },
  );
}

/** The two ways the same clients talk to the services. */
const PROTOCOLS = [
  { protocol: "app", label: "plain" },
  { protocol: "wsgate.v1", label: "wsgate.v1" },
] as const;

type Runs = Record<(typeof PROTOCOLS)[number]["label"], Json>;

const FIGURES: readonly Figure[] = [
  {
    name: "broadcast deliveries/s (best of W=4,16)",
    path: ["bcast", "msgs_per_s"],
    format: n0,
    unit: "",
  },
  {
    name: "broadcast server CPU per delivery",
    path: ["bcast", "server_cpu_us_per_msg"],
    format: n2,
    unit: " µs",
  },
  {
    name: "broadcast p50 per client (under load)",
    path: ["bcast", "p50_ms"],
    format: n2,
    unit: " ms",
  },
  {
    name: "broadcast p99 per client (under load)",
    path: ["bcast", "p99_ms"],
    format: n2,
    unit: " ms",
  },
  {
    name: "one broadcast in flight: p50 until all have it",
    path: ["bcast_lat", "all_p50_ms"],
    format: n2,
    unit: " ms",
  },
  {
    name: "one broadcast in flight: p99 until all have it",
    path: ["bcast_lat", "all_p99_ms"],
    format: n2,
    unit: " ms",
  },
  {
    name: "broadcast bytes per delivery on the wire",
    path: ["bcast", "wire_bytes_per_delivery"],
    format: n2,
    unit: " B",
  },
  {
    name: "point-to-point msgs/s (across services)",
    path: ["p2p", "msgs_per_s"],
    format: n0,
    unit: "",
  },
  {
    name: "point-to-point p50",
    path: ["p2p", "p50_ms"],
    format: n2,
    unit: " ms",
  },
  {
    name: "point-to-point p99",
    path: ["p2p", "p99_ms"],
    format: n2,
    unit: " ms",
  },
  {
    name: "point-to-point server CPU per message",
    path: ["p2p", "server_cpu_us_per_msg"],
    format: n1,
    unit: " µs",
  },
  {
    name: "point-to-point bytes per message on the wire",
    path: ["p2p", "wire_bytes_per_delivery"],
    format: n2,
    unit: " B",
  },
  {
    name: "broadcast: ack bytes back per delivery",
    path: ["bcast", "ack_bytes_per_delivery"],
    format: n2,
    unit: " B",
  },
  {
    name: "point-to-point: ack bytes back per message",
    path: ["p2p", "ack_bytes_per_delivery"],
    format: n2,
    unit: " B",
  },
  {
    name: "connect: clients accepted per second",
    path: ["connect", "per_s"],
    format: n0,
    unit: "",
  },
];

/** "median (min–max)" of `values`. */
function spread(values: number[], f: Intl.NumberFormat, unit: string): string {
  const m = median(values);
  if (m === undefined) return "-";
  if (values.length === 1) return `${f.format(m)}${unit}`;
  return `${f.format(m)}${unit} (${f.format(Math.min(...values))}–${
    f.format(Math.max(...values))
  })`;
}

function values(runs: Json[], path: readonly string[]): number[] {
  return runs.map((r) => num(get(r, ...path))).filter((v) => v !== undefined);
}

function cell(r: Json, figure: Figure): string {
  return fmt(get(r, ...figure.path), figure.format, figure.unit);
}

/** Whether every measured frame arrived once, and in sequence for v1. */
function integrity(r: Json): string {
  if (r.error) return `ERROR ${r.error}`;
  const parts: string[] = [];
  for (const phase of ["bcast", "bcast_lat", "p2p"]) {
    const expected = num(get(r, phase, "expected")) ??
      num(get(r, phase, "messages"));
    const delivered = num(get(r, phase, "delivered"));
    const dups = num(get(r, phase, "dups")) ?? 0;
    const misrouted = num(get(r, phase, "misrouted")) ?? 0;
    if (
      expected !== undefined &&
      (delivered !== expected || dups > 0 || misrouted > 0)
    ) {
      parts.push(
        `${phase}: ${delivered}/${expected}, ${dups} dups, ${misrouted} misrouted`,
      );
    }
  }
  const gaps = num(get(r, "v1", "seq_gaps"));
  if (gaps !== undefined && gaps > 0) parts.push(`${gaps} sequence gaps`);
  const closes = num(r.unexpected_closes) ?? 0;
  if (closes > 0) parts.push(`${closes} clients closed`);
  return parts.length === 0 ? "ok" : parts.join("; ");
}

function report(o: Options, rounds: Runs[]): string {
  const out: string[] = [];
  const head = [
    `${o.clients} clients, ${o.size} B`,
    "plain clients",
    "wsgate.v1 clients",
    "v1 ÷ plain",
  ];
  for (const [i, runs] of rounds.entries()) {
    out.push(`\nRound ${i + 1} of ${rounds.length}`);
    out.push(table(head, [
      ...FIGURES.map((figure) => [
        figure.name,
        cell(runs.plain, figure),
        cell(runs["wsgate.v1"], figure),
        ratioOf(runs["wsgate.v1"], runs.plain, figure.path),
      ]),
      [
        "other CPU (bcast / p2p): noise",
        otherCpu(runs.plain),
        otherCpu(runs["wsgate.v1"]),
        "",
      ],
      ["deliveries", integrity(runs.plain), integrity(runs["wsgate.v1"]), ""],
    ]));
  }
  out.push(
    `\nAll ${rounds.length} rounds: median (min–max); the ratio column is the median of the per-round ratios (min–max)`,
  );
  const plain = rounds.map((r) => r.plain);
  const v1 = rounds.map((r) => r["wsgate.v1"]);
  out.push(table(head, [
    ...FIGURES.map((figure) => [
      figure.name,
      spread(values(plain, figure.path), figure.format, figure.unit),
      spread(values(v1, figure.path), figure.format, figure.unit),
      spread(
        rounds.map((r) =>
          (num(get(r["wsgate.v1"], ...figure.path)) ?? NaN) /
          (num(get(r.plain, ...figure.path)) ?? NaN)
        ).filter(Number.isFinite),
        n2,
        "×",
      ),
    ]),
    [
      "other CPU bcast: noise",
      spread(values(plain, ["bcast", "cpu_pct", "other"]), n0, "%"),
      spread(values(v1, ["bcast", "cpu_pct", "other"]), n0, "%"),
      "",
    ],
    [
      "other CPU p2p: noise",
      spread(values(plain, ["p2p", "cpu_pct", "other"]), n0, "%"),
      spread(values(v1, ["p2p", "cpu_pct", "other"]), n0, "%"),
      "",
    ],
  ]));
  return out.join("\n");
}

function ratioOf(a: Json, b: Json, path: readonly string[]): string {
  const x = num(get(a, ...path)), y = num(get(b, ...path));
  return x === undefined || y === undefined || y === 0
    ? "-"
    : `${n2.format(x / y)}×`;
}

function otherCpu(r: Json): string {
  return `${fmt(get(r, "bcast", "cpu_pct", "other"), n0, "%")} / ${
    fmt(get(r, "p2p", "cpu_pct", "other"), n0, "%")
  }`;
}

/** The commit measured, with "+changes" when the work tree differs. */
async function commit(): Promise<string> {
  const git = async (...args: string[]) => {
    try {
      const { stdout, success } = await new Deno.Command("git", {
        args,
        stdout: "piped",
        stderr: "null",
      }).output();
      return success ? new TextDecoder().decode(stdout).trim() : "";
    } catch {
      return "";
    }
  };
  const head = await git("rev-parse", "--short", "HEAD");
  if (head === "") return "unknown";
  const dirty = await git("status", "--porcelain", "--untracked-files=no");
  return dirty === "" ? head : `${head}+changes`;
}

async function main(): Promise<void> {
  let o: Options;
  try {
    o = parseOptions(Deno.args);
  } catch (error) {
    console.error(`bench:protocol: ${(error as Error).message}`);
    Deno.exit(2);
  }
  const logs = await logFolder();
  raiseFileLimit(20_000);
  const undoSignals = stopOnSignals();
  setStep("checking that the machine is quiet");
  const busy = await machineBusyPct();
  const phases = o.smoke
    ? ["--clients", String(Math.min(o.clients, 200)), "--smoke"]
    : roundPhases(o);
  const all: Json[] = [];
  const rounds: Runs[] = [];
  let failed = false;
  try {
    for (let round = 1; round <= (o.smoke ? 1 : o.rounds); round++) {
      const runs = {} as Runs;
      for (const { protocol, label } of PROTOCOLS) {
        setStep(`${label} clients (round ${round}/${o.rounds})`);
        await waitQuiet(o.quietMax, o.quietWaitS);
        // Client 0 sends every broadcast, faster than the default rate
        // limit allows: the limit is not what is measured here.
        const cluster = await startCluster(2, {
          serviceArgs: ["--rate-limit", "off"],
        });
        const result = await runLoad(
          { ...cluster, protocol, label },
          phases,
          undefined,
          240,
        );
        await stopAll();
        all.push({ round, ...result });
        runs[label] = result;
        if (o.smoke && get(result, "smoke", "ok") !== true) failed = true;
      }
      rounds.push(runs);
    }
  } finally {
    await stopAll();
    undoSignals();
  }
  endProgress();
  if (o.json !== undefined) {
    await Deno.writeTextFile(o.json, JSON.stringify(all, null, 2));
  }
  const title =
    `wsgate bench:protocol, ${utcNow()}, commit ${await commit()}; ${machineLine()}; Deno ${Deno.version.deno}; machine busy ${busy}% before the start`;
  if (o.smoke) {
    for (const r of all) {
      console.log(
        `${r.label}: smoke ${
          get(r, "smoke", "ok") === true ? "ok" : "FAILED"
        }, ${integrity(r)}, ${JSON.stringify(get(r, "smoke", "checks"))}`,
      );
    }
    console.log(`logs: ${logs}`);
    Deno.exit(failed ? 1 : 0);
  }
  console.log(`${title}\n${report(o, rounds)}\n\nlogs: ${logs}`);
}

if (import.meta.main) {
  await main();
}
