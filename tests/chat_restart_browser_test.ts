// The chat page (examples/chat, on the client library) in a real browser
// through a service restart: alice's page is served by service A and knows
// service B (`?services=`), bob's is on B. A closes (1012 to its wsgate.v1
// clients) and starts again on its port while bob keeps writing to #lobby;
// alice's page moves to B, which takes her session over, and shows every
// message bob wrote exactly once, in order; then the page keeps working.
//
// And through a network cut (a TCP proxy that cuts without close frames,
// then holds the reconnect for a while): the page recovers its session on
// the same service, and what was written meanwhile appears once each.
//
// Needs Chromium (see helpers/browser.ts).

import assert from "node:assert/strict";
import { type Service, startService } from "../mod.ts";
import { launchBrowser, skipBrowser } from "./helpers/browser.ts";
import { startCutProxy } from "./helpers/cut_proxy.ts";
import {
  messages,
  say,
  signIn,
  startChatRegister,
  WAIT,
  writer,
} from "./helpers/chat_page.ts";
import { createChatApp } from "../examples/chat/app.ts";

const skip = skipBrowser("chat_restart_browser_test");

Deno.test({
  name:
    "chat page: a restart of its service loses nothing; the messages written meanwhile appear once each",
  ignore: skip,
  async fn() {
    await using register = await startChatRegister();
    const { options } = register;
    const start = (name: string, port = 0): Promise<Service> =>
      startService(createChatApp({ presenceIntervalMs: 500 }), {
        ...options,
        name,
        port,
      });
    let a = await start("A");
    const b = await start("B");
    const portA = a.port;
    await using browser = await launchBrowser();
    try {
      const alice = await browser.context.newPage();
      const bob = await browser.context.newPage();
      await signIn(
        alice,
        `http://127.0.0.1:${portA}/?services=127.0.0.1:${b.port}`,
        "alice",
        "A",
      );
      await signIn(
        bob,
        `http://127.0.0.1:${b.port}/?services=127.0.0.1:${portA}`,
        "bob",
        "B",
      );
      await alice.locator('#members li[data-nick="bob"]').waitFor(WAIT);

      const { sent, say: bobSays } = writer(bob);
      for (let i = 1; i <= 3; i++) await bobSays(`before ${i}`);

      // A restarts while bob writes: closing sends 1012 to alice's page,
      // which goes to B; then A starts again on its port.
      const restarted = (async () => {
        await a.close();
        a = await start("A", portA);
      })();
      for (let i = 1; i <= 12; i++) await bobSays(`during ${i}`);
      await restarted;
      await alice.locator("#service-text", {
        hasText: "Connected to service B",
      }).waitFor(WAIT);
      for (let i = 1; i <= 3; i++) await bobSays(`after ${i}`);

      // Every message, once, in order, in alice's #lobby.
      const last = alice.locator("#log .msg .msg-text", { hasText: "after 3" });
      await last.waitFor(WAIT);
      assert.deepEqual(
        await messages(alice, /^(before|during|after) \d+$/),
        sent,
      );
      await alice.locator("#log .notice", {
        hasText: "Reconnected, now through service B",
      }).waitFor(WAIT);
      assert.equal(await alice.locator("#banner").isHidden(), true);

      // The page keeps working: alice writes, bob reads; a new page on the
      // restarted A joins them.
      await say(alice, "alice is back", { untilSent: true });
      await bob.locator("#log .msg", { hasText: "alice is back" })
        .waitFor(WAIT);
      const carol = await browser.context.newPage();
      await signIn(carol, `http://127.0.0.1:${portA}/`, "carol", "A");
      await carol.locator('#members li[data-nick="alice"]').waitFor(WAIT);
      await say(carol, "hi from the new A", { untilSent: true });
      await alice.locator("#log .msg", { hasText: "hi from the new A" })
        .waitFor(WAIT);
      assert.deepEqual(
        await messages(alice, /^(before|during|after) \d+$/),
        sent,
        "nothing arrived twice later on",
      );
    } finally {
      await a.close();
      await b.close();
    }
  },
});

Deno.test({
  name:
    "chat page: after a network cut it recovers its session; the messages written meanwhile appear once each",
  ignore: skip,
  async fn() {
    await using register = await startChatRegister();
    const { options } = register;
    await using service = await startService(createChatApp(), {
      ...options,
      name: "A",
    });
    await using proxy = await startCutProxy({
      target: `127.0.0.1:${service.port}`,
    });
    await using browser = await launchBrowser();
    const alice = await browser.context.newPage();
    const bob = await browser.context.newPage();
    // alice's page, and so its WebSocket, goes through the proxy.
    await signIn(alice, `http://${proxy.address}/`, "alice", "A");
    await signIn(bob, `http://127.0.0.1:${service.port}/`, "bob", "A");
    await alice.locator('#members li[data-nick="bob"]').waitFor(WAIT);
    const [aliceId] = await service.api.getClientIdsByUid("alice");

    const { sent, say: bobSays } = writer(bob);
    for (let i = 1; i <= 3; i++) await bobSays(`before ${i}`);
    await alice.locator("#log .msg .msg-text", { hasText: "before 3" })
      .waitFor(WAIT);
    // Cut alice's connection and hold her reconnect until thawed.
    proxy.freeze();
    proxy.cutAll();
    await alice.locator("#service-text", { hasText: "reconnecting" })
      .waitFor(WAIT);
    for (let i = 1; i <= 5; i++) await bobSays(`during ${i}`);
    proxy.thaw();
    await alice.locator("#service-text", {
      hasText: "Connected to service A",
    }).waitFor(WAIT);
    for (let i = 1; i <= 3; i++) await bobSays(`after ${i}`);
    await alice.locator("#log .msg .msg-text", { hasText: "after 3" })
      .waitFor(WAIT);
    assert.deepEqual(
      await messages(alice, /^(before|during|after) \d+$/),
      sent,
    );
    // The same session: the same clientId, back online.
    assert.deepEqual(await service.api.getClientIdsByUid("alice"), [aliceId]);
    await say(alice, "alice is back", { untilSent: true });
    await bob.locator("#log .msg", { hasText: "alice is back" }).waitFor(WAIT);
  },
});
