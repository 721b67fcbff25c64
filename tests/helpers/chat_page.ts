// Test helpers: driving the chat page of examples/chat in a browser page
// (see helpers/browser.ts): sign in, write, read the log; and a register
// for services in this process that serve the page.

import type { Page } from "playwright-core";
import type { ServiceOptions } from "../../mod.ts";
import { fetch } from "../../examples/chat/app.ts";
import { localServiceOptions, startLocalRegister } from "./local_cluster.ts";
import { eventually } from "./waits.ts";

/** How long a page locator waits for what the test expects. */
export const WAIT = { timeout: 30_000 };

/**
 * Opens the chat page at `url`, signs in as `nick` and waits until the page
 * says it is connected to `service` and lists `nick` among the members.
 */
export async function signIn(
  page: Page,
  url: string,
  nick: string,
  service: string,
): Promise<void> {
  await page.goto(url);
  await page.locator("#nick-input").fill(nick);
  await page.locator("#nick-form button[type=submit]").click();
  await page.locator("#service-text", {
    hasText: `Connected to service ${service}`,
  }).waitFor(WAIT);
  await page.locator(`#members li[data-nick="${nick}"]`).waitFor(WAIT);
}

/** Options of {@linkcode say}. */
export interface SayOptions {
  /**
   * Wait until the composer is empty again, that is until the page handed
   * the message to the client.
   * @default {false}
   */
  readonly untilSent?: boolean;
}

/** Writes `text` in the page's composer and presses Enter. */
export async function say(
  page: Page,
  text: string,
  options: SayOptions = {},
): Promise<void> {
  const { untilSent = false } = options;
  await page.locator("#composer-input").fill(text);
  await page.locator("#composer-input").press("Enter");
  if (!untilSent) return;
  await eventually(
    `the page sent "${text}"`,
    async () => (await page.locator("#composer-input").inputValue()) === "",
  );
}

/** The texts of the messages in the page's log that match `pattern`. */
export async function messages(
  page: Page,
  pattern: RegExp,
): Promise<string[]> {
  const texts = await page.locator("#log .msg .msg-text").allTextContents();
  return texts.filter((t) => pattern.test(t));
}

/** A page that writes, with what it wrote, in order. */
export interface Writer {
  /** The texts written so far, each once the page handed it on. */
  readonly sent: string[];
  /** Writes `text` (`say` until sent) and adds it to {@linkcode sent}. */
  say(text: string): Promise<void>;
}

/** A {@linkcode Writer} on `page`. */
export function writer(page: Page): Writer {
  const sent: string[] = [];
  return {
    sent,
    async say(text) {
      await say(page, text, { untilSent: true });
      sent.push(text);
    },
  };
}

/** A register in this process; disposing it closes it. */
export interface ChatRegister extends AsyncDisposable {
  /** Options of a service on it that serves the chat page; logs at error. */
  readonly options: ServiceOptions;
}

/** Starts a {@linkcode ChatRegister}, logging at error. */
export async function startChatRegister(): Promise<ChatRegister> {
  const register = await startLocalRegister({ logLevel: "error" });
  return {
    options: localServiceOptions(register.address, {
      logLevel: "error",
      fetch,
    }),
    [Symbol.asyncDispose]: () => register[Symbol.asyncDispose](),
  };
}
