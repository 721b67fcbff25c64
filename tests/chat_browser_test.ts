// The chat demo in a real browser: `examples/chat/demo.ts` (what
// `deno task demo` runs) with a page on each of its two services, driven by
// headless Chromium. Screenshots land in a temporary folder printed by the
// test.
//
// Needs Chromium (`apt-get install -y chromium`, or CHROMIUM_PATH). Without
// it the test is skipped, unless WSGATE_REQUIRE_BROWSER=1 (as in CI).

import assert from "node:assert/strict";
import { startService } from "../mod.ts";
import {
  launchBrowser,
  skipBrowser,
  type TestBrowser,
} from "./helpers/browser.ts";
import { say, signIn, startChatRegister, WAIT } from "./helpers/chat_page.ts";
import { Child } from "./helpers/processes.ts";
import { createChatApp } from "../examples/chat/app.ts";

const skip = skipBrowser("chat_browser_test");

/** The demo as a child process, with the URLs it printed. */
async function startDemo() {
  const child = await Child.start("examples/chat/demo.ts", [
    "--port",
    "0",
    "--rpc-port",
    "0",
    "--register-port",
    "0",
    "--http-port",
    "0",
    "--log-level",
    "warn",
  ]);
  while (!child.output.some((line) => line.includes("Ctrl-C"))) {
    if (await child.nextLine() === undefined) break;
  }
  const output = [child.first, ...child.output].join("\n");
  const url = (name: string) =>
    new RegExp(`service ${name}\\s+(http://\\S+)`).exec(output)?.[1];
  return {
    output,
    a: url("A"),
    b: url("B"),
    /** SIGINT, as Ctrl-C; resolves with the exit code and the rest of stdout. */
    async stop(): Promise<{ code: number; rest: string }> {
      const seen = child.output.length;
      const { code } = await child.stop("SIGINT");
      return { code, rest: child.output.slice(seen).join("\n") };
    },
  };
}

Deno.test({
  name: "chat demo: two pages on two services chat, list rooms and whisper",
  ignore: skip,
  async fn() {
    const demo = await startDemo();
    const shots = await Deno.makeTempDir({ prefix: "wsgate-chat-shots-" });
    let browser: TestBrowser | undefined;
    try {
      assert.ok(demo.a && demo.b, `the demo printed two URLs:\n${demo.output}`);
      assert.notEqual(demo.a, demo.b);
      browser = await launchBrowser();
      const alice = await browser.context.newPage();
      const bob = await browser.context.newPage();

      await signIn(alice, demo.a, "alice", "A");
      await signIn(bob, demo.b, "bob", "B");

      // Both are in #lobby; the member lists come from getUidsByGroup.
      await bob.locator('#members li[data-nick="alice"]').waitFor(WAIT);
      await alice.locator('#members li[data-nick="bob"]').waitFor(WAIT);
      await alice.locator("#log .notice", { hasText: "bob joined #lobby" })
        .waitFor(WAIT);
      await alice.locator("#online .count", { hasText: "2" }).waitFor(WAIT);
      await bob.locator("#online .count", { hasText: "2" }).waitFor(WAIT);

      // A message crosses from service A to service B, and back.
      await say(alice, "hello from A");
      const onBob = bob.locator("#log .msg", { hasText: "hello from A" });
      await onBob.waitFor(WAIT);
      assert.equal(await onBob.locator(".from").textContent(), "alice");
      assert.equal(await onBob.locator(".via").textContent(), "via A");
      await say(bob, "hi from B");
      const onAlice = alice.locator("#log .msg", { hasText: "hi from B" });
      await onAlice.waitFor(WAIT);
      assert.equal(await onAlice.locator(".via").textContent(), "via B");
      await bob.locator("#log .msg", { hasText: "hi from B" }).waitFor(WAIT);
      await bob.screenshot({ path: `${shots}/service-b-lobby.png` });

      // A new room shows up in the other page's room list with its count.
      await alice.locator("#join-input").fill("dev");
      await alice.locator("#join-input").press("Enter");
      await alice.locator("#view-title", { hasText: "#dev" }).waitFor(WAIT);
      await bob.locator('#rooms li[data-room="dev"] .badge', { hasText: "1" })
        .waitFor(WAIT);
      await bob.locator('#rooms li[data-room="lobby"] .badge', {
        hasText: "2",
      }).waitFor(WAIT);

      // A private message from B reaches only alice, on A.
      await bob.locator('#members li[data-nick="alice"] button').click();
      await bob.locator("#view-title", { hasText: "@alice" }).waitFor(WAIT);
      await say(bob, "psst, alice");
      await bob.locator("#log .msg.whisper", { hasText: "psst, alice" })
        .waitFor(WAIT);
      const unread = alice.locator('#directs li[data-nick="bob"] .unread');
      await unread.waitFor(WAIT);
      await alice.locator('#directs li[data-nick="bob"] button').click();
      const whisper = alice.locator("#log .msg.whisper", {
        hasText: "psst, alice",
      });
      await whisper.waitFor(WAIT);
      assert.equal(await whisper.locator(".via").textContent(), "via B");

      await alice.screenshot({ path: `${shots}/service-a-whisper.png` });
      for (const name of ["service-b-lobby.png", "service-a-whisper.png"]) {
        assert.ok((await Deno.stat(`${shots}/${name}`)).size > 10_000, name);
      }

      // When bob's page goes away, alice sees him leave.
      await alice.locator('#rooms li[data-room="lobby"] button').click();
      await bob.close();
      await alice.locator("#log .notice", { hasText: "bob left #lobby" })
        .waitFor(WAIT);
      await alice.locator("#online .count", { hasText: "1" }).waitFor(WAIT);
      console.log(`chat screenshots: ${shots}`);
    } finally {
      await browser?.[Symbol.asyncDispose]();
      const { code, rest } = await demo.stop();
      assert.equal(code, 0, "Ctrl-C stops the demo cleanly");
      assert.match(rest, /demo stopped/);
    }
  },
});

Deno.test({
  name: "chat page reconnects by itself when its service restarts",
  ignore: skip,
  async fn() {
    await using register = await startChatRegister();
    const { options } = register;
    let service = await startService(createChatApp(), {
      ...options,
      name: "first",
    });
    const port = service.port;
    const browser = await launchBrowser();
    try {
      const page = await browser.context.newPage();
      await signIn(page, `http://127.0.0.1:${port}/`, "dora", "first");
      await page.locator("#join-input").fill("ops");
      await page.locator("#join-input").press("Enter");
      await page.locator('#members li[data-nick="dora"]').waitFor(WAIT);

      await service.close();
      await page.locator("#banner", { hasText: "Lost the connection" })
        .waitFor(WAIT);
      service = await startService(createChatApp(), {
        ...options,
        name: "second",
        port,
      });
      await page.locator("#service-text", {
        hasText: "Connected to service second",
      }).waitFor(WAIT);
      await page.locator("#log .notice", {
        hasText: "Reconnected, now through service second",
      }).waitFor(WAIT);
      // The page joined its rooms again on the new service.
      await page.locator('#members li[data-nick="dora"]').waitFor(WAIT);
      assert.deepEqual(await service.api.getUidsByGroup("room:ops"), ["dora"]);
      assert.equal(await page.locator("#banner").isHidden(), true);
    } finally {
      await browser[Symbol.asyncDispose]();
      await service.close();
    }
  },
});
