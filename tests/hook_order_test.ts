// Hook ordering, per client: onConnect finishes before the first onMessage,
// what onConnect sends arrives, onMessage calls never overlap, and onClose
// runs exactly once, after the last onMessage, however the client goes.

import assert from "node:assert/strict";
import { type Application, type Service, startService } from "../mod.ts";
import { RawClient, TestClient } from "./helpers/clients.ts";
import {
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { eventually, settles } from "./helpers/waits.ts";

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Records every hook call per client; async hooks take a little while. */
class Recorder {
  readonly log = new Map<string, string[]>();
  #active = new Set<string>();
  overlaps = 0;

  #push(clientId: string, entry: string): void {
    let entries = this.log.get(clientId);
    if (entries === undefined) this.log.set(clientId, entries = []);
    entries.push(entry);
  }

  async #hook(clientId: string, name: string, ms: number): Promise<void> {
    if (this.#active.has(clientId)) this.overlaps++;
    this.#active.add(clientId);
    this.#push(clientId, `${name} start`);
    await delay(ms);
    this.#push(clientId, `${name} end`);
    this.#active.delete(clientId);
  }

  app(extra: Application = {}): Application {
    return {
      ...extra,
      onConnect: async (clientId, ctx) => {
        await this.#hook(clientId, "connect", 50);
        await extra.onConnect?.(clientId, ctx);
        await ctx.api.sendToClient(clientId, `id:${clientId}`);
      },
      onMessage: async (clientId, message) => {
        const text = typeof message === "string"
          ? message
          : `bytes(${message.length})`;
        await this.#hook(clientId, `message ${text}`, Math.random() * 10);
      },
      onClose: async (clientId) => {
        await this.#hook(clientId, "close", 5);
      },
    };
  }

  /** Checks one client's log: connect, then messages, then one close. */
  check(clientId: string, messages: string[]): void {
    const expected = [
      "connect start",
      "connect end",
      ...messages.flatMap((m) => [`message ${m} start`, `message ${m} end`]),
      "close start",
      "close end",
    ];
    assert.deepEqual(this.log.get(clientId), expected, clientId);
  }

  closed(clientId: string): boolean {
    return this.log.get(clientId)?.at(-1) === "close end";
  }
}

async function startPair(
  app: Application,
  extra: { maxBufferedBytes?: number; maxMessageBytes?: number } = {},
): Promise<{ service: Service; peer: Service } & AsyncDisposable> {
  const register = await startLocalRegister();
  const options = localServiceOptions(register.address);
  const service = await startService(app, { ...options, ...extra });
  // The peer joins second: its first member list names the service.
  const peer = await startService({}, options);
  return {
    service,
    peer,
    async [Symbol.asyncDispose]() {
      await peer.close();
      await service.close();
      await register.close();
    },
  };
}

Deno.test("onConnect finishes before the first onMessage, and onMessage calls never overlap", async () => {
  const recorder = new Recorder();
  await using pair = await startPair(recorder.app());
  const port = pair.service.port;
  // Clients that talk at once, while onConnect still runs, then leave.
  const clients = await Promise.all(
    Array.from({ length: 8 }, async () => {
      const socket = new WebSocket(`ws://127.0.0.1:${port}/`);
      const closed = new Promise((resolve) => socket.onclose = resolve);
      await new Promise((resolve) => socket.onopen = resolve);
      for (let i = 0; i < 5; i++) socket.send(`m${i}`);
      socket.send(new Uint8Array(3));
      const id = await new Promise<string>((resolve) => {
        socket.onmessage = (event) => resolve(String(event.data).slice(3));
      });
      socket.close();
      await settles("the socket closes", closed);
      return id;
    }),
  );
  await eventually(
    "every onClose ran",
    () => clients.every((id) => recorder.closed(id)),
  );
  for (const id of clients) {
    recorder.check(id, ["m0", "m1", "m2", "m3", "m4", "bytes(3)"]);
  }
  assert.equal(recorder.overlaps, 0);
});

Deno.test("what onConnect sends to its own client arrives, by every route", async () => {
  const other: { peer?: Service } = {};
  const app: Application = {
    async onConnect(clientId, { api }) {
      await api.bindUid(clientId, `user-${clientId}`);
      await api.joinGroup(clientId, `group-${clientId}`);
      await api.sendToClient(clientId, `id:${clientId}`);
      await api.sendToUid(`user-${clientId}`, "by uid");
      await api.sendToGroup(`group-${clientId}`, "by group");
      await api.sendToAll("to all");
      // Another service reaches it too: it is registered before onConnect.
      await other.peer!.api.sendToClient(clientId, "via a peer");
      await other.peer!.api.sendToUid(`user-${clientId}`, "via a peer by uid");
      await api.sendToClient(clientId, "last");
    },
  };
  await using pair = await startPair(app);
  other.peer = pair.peer;
  for (let i = 0; i < 5; i++) {
    await using client = await TestClient.connect(pair.service.port);
    assert.deepEqual(await client.take(6), [
      "by uid",
      "by group",
      "to all",
      "via a peer",
      "via a peer by uid",
      "last",
    ]);
  }
});

Deno.test("onClose runs exactly once, after the last onMessage, however a client goes", async (t) => {
  const recorder = new Recorder();
  await using pair = await startPair(recorder.app(), {
    maxBufferedBytes: 64 * 1024,
    maxMessageBytes: 1000,
  });
  const { service } = pair;
  const api = service.api;

  await t.step("the client closes right after sending", async () => {
    const client = await TestClient.connect(service.port);
    for (let i = 0; i < 20; i++) client.socket.send(`m${i}`);
    await client.close();
    await eventually("onClose ran", () => recorder.closed(client.id));
    recorder.check(client.id, Array.from({ length: 20 }, (_, i) => `m${i}`));
  });

  await t.step("Api.closeClient() while messages are queued", async () => {
    const client = await TestClient.connect(service.port);
    for (let i = 0; i < 10; i++) client.socket.send(`m${i}`);
    await eventually(
      "the first message is being handled",
      () => recorder.log.get(client.id)!.length > 2,
    );
    await api.closeClient(client.id);
    assert.equal((await settles("closed", client.closed)).code, 1000);
    await eventually("onClose ran", () => recorder.closed(client.id));
    // Messages still in the socket when the service closed it may be
    // dropped; the ones delivered came first, in order, then onClose.
    const log = recorder.log.get(client.id)!;
    const delivered = log.filter((e) => /^message m\d+ start$/.test(e))
      .map((e) => e.split(" ")[1]!);
    recorder.check(client.id, delivered);
    assert.deepEqual(
      delivered,
      Array.from({ length: delivered.length }, (_, i) => `m${i}`),
    );
  });

  await t.step("a message that is too big", async () => {
    const client = await TestClient.connect(service.port);
    client.socket.send("fine");
    client.socket.send("x".repeat(1001));
    client.socket.send("never delivered");
    // 1009 here, or no close frame at all: Deno may drop the close frame
    // when the client keeps sending after the service closed it.
    await settles("closed", client.closed);
    await eventually("onClose ran", () => recorder.closed(client.id));
    recorder.check(client.id, ["fine"]);
  });

  await t.step("a slow consumer", async () => {
    await using raw = await RawClient.connect(service.port);
    const [id] = await api.getAllClientIds();
    await raw.send(0x1, new TextEncoder().encode("before"));
    await eventually(
      "its message arrived",
      () => recorder.log.get(id!)?.includes("message before end") ?? false,
    );
    // Flood it until the service gives up on it.
    const chunk = new Uint8Array(16 * 1024);
    for (let i = 0; i < 2000 && await api.isOnline(id!); i++) {
      await api.sendToClient(id!, chunk);
      if (i % 16 === 15) await delay(0);
    }
    await eventually("onClose ran", () => recorder.closed(id!));
    recorder.check(id!, ["before"]);
  });

  await t.step("the service closes", async () => {
    const client = await TestClient.connect(service.port);
    client.socket.send("one");
    client.socket.send("two");
    await eventually(
      "both arrived",
      () => recorder.log.get(client.id)!.includes("message two end"),
    );
    await service.close();
    assert.equal((await settles("closed", client.closed)).code, 1001);
    assert.ok(
      recorder.closed(client.id),
      "onClose ran before close() resolved",
    );
    recorder.check(client.id, ["one", "two"]);
  });
  assert.equal(recorder.overlaps, 0);
});
