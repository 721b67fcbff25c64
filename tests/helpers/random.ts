// Seedable randomness for fuzz tests, so that a failing run can be replayed.

/** A small, seedable PRNG (mulberry32): numbers in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The seed of a fuzz run: `$WSGATE_FUZZ_SEED`, or one from the clock. It is
 * printed, with how to replay it.
 */
export function fuzzSeed(what: string): number {
  const seed = Number(Deno.env.get("WSGATE_FUZZ_SEED") ?? Date.now() % 2 ** 31);
  console.log(`${what} seed ${seed} (set WSGATE_FUZZ_SEED=${seed} to replay)`);
  return seed;
}
