// What the A/B benchmarks share (bench/protocol.ts: plain clients against
// wsgate.v1 clients; bench/compare.ts: one checkout of the code against
// another): rounds of two variants of the same cluster, a register and two
// bench/app.ts services on a freshly started cluster per run, driven by the
// same load generator (bench/load.ts), alternating A B, B A, ... so that a
// drift of the machine hits both; and the report, every round, the median
// and the spread (min-max), because on a small shared machine one run
// proves little.

import {
  endProgress,
  type Figure,
  fmt,
  get,
  type Json,
  logFolder,
  median,
  n0,
  n1,
  n2,
  num,
  raiseFileLimit,
  type RoundOptions,
  runLoad,
  setStep,
  startCluster,
  stopAll,
  stopOnSignals,
  table,
  type Target,
  waitQuiet,
} from "./harness.ts";
import { machineBusyPct } from "./proc.ts";

/** One side of an A/B. */
export interface Variant {
  /** Its name in the report. */
  readonly label: string;
  /** The load generator's client protocol. */
  readonly protocol: Target["protocol"];
  /** The checkout whose register.ts and service.ts run (default: this one). */
  readonly code?: string | undefined;
}

/** One round: each variant's result, by label. */
export type Runs = Record<string, Json>;

/** What {@linkcode measureRounds} measured. */
export interface Measured {
  /** Every round: each variant's result. */
  readonly rounds: Runs[];
  /** Every result in the order run, with its round number. */
  readonly all: Json[];
  /** How busy the machine was before the start, in per cent. */
  readonly busy: number;
  /** Where the processes' logs are. */
  readonly logs: string;
}

/**
 * Runs `o.rounds` rounds of both variants, alternating which goes first,
 * each on a fresh cluster with the phases `phases` (bench/load.ts flags);
 * stops every process it started, also on a signal, and writes the raw
 * results to `o.json` when set.
 */
export async function measureRounds(
  o: RoundOptions,
  variants: readonly [Variant, Variant],
  phases: readonly string[],
): Promise<Measured> {
  const logs = await logFolder();
  raiseFileLimit(20_000);
  const undoSignals = stopOnSignals();
  const rounds: Runs[] = [];
  const all: Json[] = [];
  let busy: number;
  try {
    setStep("checking that the machine is quiet");
    busy = await machineBusyPct();
    for (let round = 1; round <= o.rounds; round++) {
      const runs: Runs = {};
      const order = round % 2 === 1 ? variants : [variants[1], variants[0]];
      for (const { label, protocol, code } of order) {
        setStep(`${label} (round ${round}/${o.rounds})`);
        await waitQuiet(o.quietMax, o.quietWaitS);
        // Client 0 sends every broadcast, faster than the default rate
        // limit allows: the limit is not what is measured here.
        const cluster = await startCluster(2, {
          ...(code === undefined ? {} : { code }),
          serviceArgs: ["--rate-limit", "off"],
        });
        const result = await runLoad(
          { ...cluster, protocol, label },
          [...phases],
          undefined,
          240,
        );
        await stopAll();
        all.push({ round, ...result });
        runs[label] = result;
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
  return { rounds, all, busy, logs };
}

/** What the report shows of each run. */
export const FIGURES: readonly Figure[] = [
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
export function integrity(r: Json): string {
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

/**
 * Every round's table and the summary of all rounds: `second` next to
 * `first`, with their ratio.
 */
export function report(
  o: RoundOptions,
  [first, second]: readonly [Variant, Variant],
  rounds: readonly Runs[],
): string {
  const out: string[] = [];
  const head = [
    `${o.clients} clients, ${o.size} B`,
    first.label,
    second.label,
    `${second.label} ÷ ${first.label}`,
  ];
  for (const [i, runs] of rounds.entries()) {
    const a = runs[first.label]!, b = runs[second.label]!;
    out.push(`\nRound ${i + 1} of ${rounds.length}`);
    out.push(table(head, [
      ...FIGURES.map((figure) => [
        figure.name,
        cell(a, figure),
        cell(b, figure),
        ratioOf(b, a, figure.path),
      ]),
      ["other CPU (bcast / p2p): noise", otherCpu(a), otherCpu(b), ""],
      ["deliveries", integrity(a), integrity(b), ""],
    ]));
  }
  out.push(
    `\nAll ${rounds.length} rounds: median (min–max); the ratio column is the median of the per-round ratios (min–max)`,
  );
  const as = rounds.map((r) => r[first.label]!);
  const bs = rounds.map((r) => r[second.label]!);
  out.push(table(head, [
    ...FIGURES.map((figure) => [
      figure.name,
      spread(values(as, figure.path), figure.format, figure.unit),
      spread(values(bs, figure.path), figure.format, figure.unit),
      spread(
        rounds.map((r) =>
          (num(get(r[second.label], ...figure.path)) ?? NaN) /
          (num(get(r[first.label], ...figure.path)) ?? NaN)
        ).filter(Number.isFinite),
        n2,
        "×",
      ),
    ]),
    [
      "other CPU bcast: noise",
      spread(values(as, ["bcast", "cpu_pct", "other"]), n0, "%"),
      spread(values(bs, ["bcast", "cpu_pct", "other"]), n0, "%"),
      "",
    ],
    [
      "other CPU p2p: noise",
      spread(values(as, ["p2p", "cpu_pct", "other"]), n0, "%"),
      spread(values(bs, ["p2p", "cpu_pct", "other"]), n0, "%"),
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

/**
 * The commit of the checkout in `cwd` (default: this one), with
 * "+changes" when its work tree differs.
 */
export async function commit(cwd?: string): Promise<string> {
  const git = async (...args: string[]) => {
    try {
      const { stdout, success } = await new Deno.Command("git", {
        args,
        ...(cwd === undefined ? {} : { cwd }),
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
