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
  commit,
  integrity,
  measureRounds,
  report,
  type Variant,
} from "./alternating.ts";
import {
  get,
  machineLine,
  parseRoundOptions,
  type RoundOptions,
  roundPhases,
  utcNow,
} from "./harness.ts";

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
const VARIANTS: readonly [Variant, Variant] = [
  { protocol: "app", label: "plain clients" },
  { protocol: "wsgate.v1", label: "wsgate.v1 clients" },
];

async function main(): Promise<void> {
  let o: Options;
  try {
    o = parseOptions(Deno.args);
  } catch (error) {
    console.error(`bench:protocol: ${(error as Error).message}`);
    Deno.exit(2);
  }
  const phases = o.smoke
    ? ["--clients", String(Math.min(o.clients, 200)), "--smoke"]
    : roundPhases(o);
  const { rounds, all, busy, logs } = await measureRounds(
    o.smoke ? { ...o, rounds: 1 } : o,
    VARIANTS,
    phases,
  );
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
    const failed = all.some((r) => get(r, "smoke", "ok") !== true);
    Deno.exit(failed ? 1 : 0);
  }
  console.log(`${title}\n${report(o, VARIANTS, rounds)}\n\nlogs: ${logs}`);
}

if (import.meta.main) {
  await main();
}
