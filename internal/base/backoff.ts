// Waiting between retries.

/** Options of {@linkcode backoffDelay}. */
export interface BackoffOptions {
  /** The first delay, in milliseconds. */
  readonly minMs: number;
  /** The largest delay, in milliseconds. */
  readonly maxMs: number;
}

/**
 * The delay before retry number `attempt` (0 for the first): exponential
 * from `minMs`, capped at `maxMs`, with "equal jitter" (a random half), so
 * that services that lost the same register do not retry in lockstep.
 */
export function backoffDelay(attempt: number, options: BackoffOptions): number {
  const ceiling = Math.min(options.maxMs, options.minMs * 2 ** attempt);
  return ceiling / 2 + Math.random() * ceiling / 2;
}

/** Resolves after `ms`, or at once when `signal` aborts; never rejects. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
