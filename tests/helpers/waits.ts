// Test helpers: waiting for something, bounded in time.

import type { Api } from "../../mod.ts";

/** Polls `check` until it returns true; throws after `timeoutMs`. */
export async function eventually(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`timed out waiting until ${what}`, { cause: lastError });
}

/** Waits until `api` counts `n` clients in the cluster; `what` says why. */
export function untilClientCount(
  api: Api,
  n: number,
  what: string,
): Promise<void> {
  return eventually(what, async () => (await api.getAllClientCount()) === n);
}

/** Waits for `promise`; throws after `timeoutMs` naming `what`. */
export async function settles<T>(
  what: string,
  promise: Promise<T>,
  timeoutMs = 10_000,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`timed out waiting until ${what}`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
