// Test helpers: a headless Chromium for the browser tests, found at
// CHROMIUM_PATH or /usr/bin/chromium (`apt-get install -y chromium`).
// Without it a browser test is skipped (`ignore: skipBrowser(...)`), unless
// WSGATE_REQUIRE_BROWSER=1 (as in CI), where it fails.

import { type BrowserContext, chromium } from "playwright-core";

/** Where Chromium is looked for. */
export const executablePath: string = Deno.env.get("CHROMIUM_PATH") ??
  "/usr/bin/chromium";

/** Whether Chromium is there. */
export const haveBrowser: boolean = await Deno.stat(executablePath).then(
  () => true,
  () => false,
);

/** Whether a missing browser fails the test instead of skipping it. */
export const browserRequired: boolean =
  Deno.env.get("WSGATE_REQUIRE_BROWSER") === "1";

/** The flags Chromium runs with in tests. */
export const BROWSER_ARGS: readonly string[] = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * Whether the browser tests of `file` are to be skipped; says so once on
 * stderr when they are.
 */
export function skipBrowser(file: string): boolean {
  if (haveBrowser || browserRequired) return false;
  console.warn(
    `${file}: no browser at ${executablePath}; skipped (apt-get install -y chromium)`,
  );
  return true;
}

/** A browser with a fresh profile; disposing closes it and removes both. */
export interface TestBrowser extends AsyncDisposable {
  readonly context: BrowserContext;
}

/** Launches Chromium headless with a fresh profile folder. */
export async function launchBrowser(
  viewport: { width: number; height: number } = { width: 1200, height: 760 },
): Promise<TestBrowser> {
  const profile = await Deno.makeTempDir({ prefix: "wsgate-chrome-" });
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      viewport,
      args: [...BROWSER_ARGS],
    });
  } catch (error) {
    await Deno.remove(profile, { recursive: true });
    throw error;
  }
  return {
    context,
    async [Symbol.asyncDispose]() {
      await context.close();
      await Deno.remove(profile, { recursive: true });
    },
  };
}
