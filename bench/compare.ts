// `deno task bench:compare --before DIR`: did a change slow anything down?
// The same cluster set-up as bench:protocol (a register and two
// bench/app.ts services, plain clients), once with the register.ts and
// service.ts of the checkout in DIR and once with this one's (or
// `--after DIR`), in alternating rounds, so that the one load generator
// and the one machine measure both. The app is always this checkout's
// bench/app.ts. A checkout to compare with, for example:
//
//   git worktree add /tmp/before <commit> && (cd /tmp/before && deno install)
//   deno task bench:compare --before /tmp/before --rounds 12   (~4 min)
//
// Options: --before DIR (needed), --after DIR (this checkout), --rounds N
// (6), --clients C (2000), --p2p N (20000), --bcast M (200), --size S (64),
// --quiet-max PCT (15), --quiet-wait S (20), --json FILE (also write the
// raw results there).

import { commit, measureRounds, report, type Variant } from "./alternating.ts";
import {
  machineLine,
  parseRoundOptions,
  root,
  type RoundOptions,
  roundPhases,
  utcNow,
} from "./harness.ts";

interface Options extends RoundOptions {
  before: string | undefined;
  after: string;
}

const USAGE =
  "usage: deno task bench:compare --before DIR [--after DIR] [--rounds N] [--clients C] [--p2p N] [--bcast M] [--size S] [--quiet-max PCT] [--quiet-wait S] [--json FILE]";

function parseOptions(args: readonly string[]): Options {
  const o: Options = {
    rounds: 6,
    clients: 2000,
    p2p: 20000,
    bcast: 200,
    size: 64,
    quietMax: 15,
    quietWaitS: 20,
    json: undefined,
    before: undefined,
    after: root,
  };
  parseRoundOptions(args, o, USAGE, (flag) => {
    if (flag.name === "--before") o.before = flag.value();
    else if (flag.name === "--after") o.after = flag.value();
    else return false;
    return true;
  });
  if (o.before === undefined) throw new Error(`--before is needed\n${USAGE}`);
  for (const dir of [o.before, o.after]) {
    try {
      Deno.statSync(`${dir}/service.ts`);
    } catch {
      throw new Error(`${dir} is not a checkout of wsgate (no service.ts)`);
    }
  }
  return o;
}

async function main(): Promise<void> {
  let o: Options;
  try {
    o = parseOptions(Deno.args);
  } catch (error) {
    console.error(`bench:compare: ${(error as Error).message}`);
    Deno.exit(2);
  }
  const variants: [Variant, Variant] = [
    {
      label: `before ${await commit(o.before)}`,
      protocol: "app",
      code: o.before,
    },
    { label: `after ${await commit(o.after)}`, protocol: "app", code: o.after },
  ];
  const { rounds, busy, logs } = await measureRounds(
    o,
    variants,
    roundPhases(o),
  );
  console.log(
    `wsgate bench:compare, ${utcNow()}; ${machineLine()}; Deno ${Deno.version.deno}; machine busy ${busy}% before the start\n${
      report(o, variants, rounds)
    }\n\nlogs: ${logs}`,
  );
}

if (import.meta.main) {
  await main();
}
