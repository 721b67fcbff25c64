// The chat example (examples/chat/app.ts) as people copy it into a service
// that faces the internet: a bound on rooms per page, room events for the
// room only and no broadcast per arrival, and no internal detail in what a
// page is told. Real services, real WebSockets, and one chat service as a
// process (service.ts --app examples/chat/app.ts) for its log.

import assert from "node:assert/strict";
import { type Service, startService } from "../mod.ts";
import {
  createChatApp,
  GENERIC_ERROR,
  MAX_ROOMS,
} from "../examples/chat/app.ts";
import { TestClient } from "./helpers/clients.ts";
import {
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { Child, parseReadyLine } from "./helpers/processes.ts";
import { eventually } from "./helpers/waits.ts";

/** A chat event as the page gets it. */
type ChatEvent = Record<string, unknown> & { type: string };

/** A page of the chat: a WebSocket that reads JSON events. */
class Page implements AsyncDisposable {
  readonly #client: TestClient;
  clientId = "";

  private constructor(client: TestClient) {
    this.#client = client;
  }

  /** Connects as `nick` and reads the welcome. */
  static async open(port: number, nick: string): Promise<Page> {
    const page = new Page(
      new TestClient(`ws://127.0.0.1:${port}/?nick=${nick}`),
    );
    const welcome = await page.next();
    assert.equal(welcome.type, "welcome", JSON.stringify(welcome));
    page.clientId = (welcome.you as { clientId: string }).clientId;
    return page;
  }

  send(event: object): void {
    this.#client.socket.send(JSON.stringify(event));
  }

  async next(): Promise<ChatEvent> {
    const message = await this.#client.next(10_000);
    assert.equal(typeof message, "string");
    return JSON.parse(message as string);
  }

  /** Reads events until one of `type` (for `room`, if given). */
  async until(type: string, room?: string): Promise<ChatEvent> {
    for (;;) {
      const event = await this.next();
      if (event.type === type && (room === undefined || event.room === room)) {
        return event;
      }
    }
  }

  /** What the page got and has not read yet, parsed. */
  get pending(): ChatEvent[] {
    return this.#client.pending.map((m) => JSON.parse(m as string));
  }

  /**
   * Asserts that nothing reached the page before a marker that `service`
   * sends it now (a marker is not JSON: it ends the check).
   */
  async expectNothing(service: Service, why: string): Promise<void> {
    await service.api.sendToClient(this.clientId, "marker");
    assert.equal(await this.#client.next(), "marker", why);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.#client.close();
  }
}

Deno.test("chat app: a page may be in at most 10 rooms", async () => {
  await using register = await startLocalRegister({ logLevel: "error" });
  await using service = await startService(
    createChatApp({ presenceIntervalMs: 60_000 }),
    localServiceOptions(register.address, { logLevel: "error" }),
  );
  await using page = await Page.open(service.port, "rita");
  for (let i = 0; i < MAX_ROOMS; i++) {
    page.send({ type: "join", room: `r${i}` });
    await page.until("members", `r${i}`);
  }
  page.send({ type: "join", room: "one-too-many" });
  const refused = await page.until("error");
  assert.deepEqual(refused, {
    type: "error",
    text:
      "You can be in at most 10 rooms: leave one before you join #one-too-many",
    room: "one-too-many",
  });
  assert.deepEqual(await service.api.getUidsByGroup("room:one-too-many"), []);
  // Joining a room it is in again is no new room; leaving one makes room.
  page.send({ type: "join", room: "r0" });
  await page.until("members", "r0");
  page.send({ type: "leave", room: "r9" });
  await page.until("members", "r9");
  page.send({ type: "join", room: "one-too-many" });
  await page.until("members", "one-too-many");
  const groups = await service.api.getAllGroups();
  assert.equal(groups.length, MAX_ROOMS);
  // Room names stay short.
  page.send({ type: "join", room: "x".repeat(25) });
  assert.match(String((await page.until("error")).text), /1 to 24/);
});

Deno.test("chat app: arrivals and joins reach the room only; the online count and room list follow by refresh", async (t) => {
  await using register = await startLocalRegister({ logLevel: "error" });
  const options = localServiceOptions(register.address, { logLevel: "error" });
  await using a = await startService(
    createChatApp({ presenceIntervalMs: 60_000 }),
    options,
  );
  await using b = await startService(
    createChatApp({ presenceIntervalMs: 60_000 }),
    options,
  );
  await eventually("both services see each other", async () => {
    const health = await fetch(`http://127.0.0.1:${a.port}/healthz`);
    return (await health.json()).members === 2;
  });
  await using xena = await Page.open(a.port, "xena");
  xena.send({ type: "join", room: "lobby" });
  await xena.until("members", "lobby");

  await t.step(
    "a page that connects and joins a room is announced there only",
    async () => {
      await using yuri = await Page.open(b.port, "yuri");
      yuri.send({ type: "join", room: "dev" });
      const joined = await yuri.until("joined", "dev");
      assert.equal(joined.nick, "yuri");
      await yuri.until("members", "dev");
      await xena.expectNothing(a, "xena is in #lobby, not #dev");
      yuri.send({ type: "join", room: "lobby" });
      await yuri.until("members", "lobby");
      const seen = await xena.until("joined", "lobby");
      assert.equal(seen.nick, "yuri");
      assert.deepEqual((await xena.until("members", "lobby")).members, [
        "xena",
        "yuri",
      ]);
      await xena.expectNothing(a, "no online count, no room list per join");
    },
  );

  await t.step(
    "each service tells its own pages what changed, when it refreshes",
    async () => {
      // yuri's page went at the end of the last step: #lobby heard it.
      assert.equal((await xena.until("left", "lobby")).nick, "yuri");
      await using refreshing = await startService(
        createChatApp({ presenceIntervalMs: 50 }),
        options,
      );
      await using zoe = await Page.open(refreshing.port, "zoe");
      await using ugo = await Page.open(b.port, "ugo");
      ugo.send({ type: "join", room: "ops" });
      await ugo.until("members", "ops");
      await eventually("zoe's room list shows #ops with one person", () => {
        const rooms = zoe.pending.findLast((e) => e.type === "rooms")?.rooms as
          | { name: string; people: number }[]
          | undefined;
        return rooms?.find((r) => r.name === "ops")?.people === 1;
      });
      const online = zoe.pending.findLast((e) => e.type === "online");
      assert.equal(online?.count, 3, "xena, zoe and ugo");
      await ugo.expectNothing(b, "service B has not refreshed");
      await xena.expectNothing(a, "service A has not refreshed");
      // Close so that no onClose fans out to a service that is going away
      // at the same time: a service's close waits for the onClose of its
      // pages (ugo's reaches A and the refreshing service, both up), and
      // A closes xena's page once it knows that it is alone.
      await b.close();
      await refreshing.close();
      await eventually("service A sees that the others left", async () => {
        const health = await fetch(`http://127.0.0.1:${a.port}/healthz`);
        return (await health.json()).members === 1;
      });
      await a.close();
    },
  );
});

Deno.test("chat app: an unexpected error reaches the page as a generic text, and the service's log in detail", async () => {
  // A peer that refuses every call (another secret) makes cluster-wide
  // calls of the chat's service fail, naming the peer's address.
  await using register = await startLocalRegister({ logLevel: "error" });
  await using stranger = await startService(
    {},
    localServiceOptions(register.address, {
      logLevel: "error",
      secret: "another-secret",
    }),
  );
  const peer = stranger.rpcAddress;
  await using chat = await Child.start("service.ts", [
    "--app",
    "examples/chat/app.ts",
    "--register",
    register.address,
    "--hostname",
    "127.0.0.1",
    "--port",
    "0",
    "--rpc-port",
    "0",
    "--log-level",
    "error",
  ], { captureStderr: true, env: { WSGATE_SECRET: "chat-secret" } });
  const { port } = parseReadyLine(chat.first);
  // The welcome comes with what the chat's own service knows.
  await using wes = await Page.open(port, "wes");
  wes.send({ type: "whisper", to: "nobody", text: "psst" });
  const error = await wes.until("error");
  assert.deepEqual(error, { type: "error", text: GENERIC_ERROR });
  await eventually(
    "the service logs what went wrong",
    () => chat.stderr.includes("onMessage failed"),
  );
  assert.match(chat.stderr, new RegExp(peer.replaceAll(".", "\\.")));
});
