// One client cannot keep a service busy: a client that sends faster than
// its rate limit (a token bucket, 100 a second and 200 at once by default)
// is closed with 1008 "rate limit" and counted; a client within it never
// notices; onHandshake can give one client other limits. Messages waiting
// for onMessage are bounded (the socket is not read meanwhile) and dropped
// once the service closes the client.

import assert from "node:assert/strict";
import { type Application, type Message, startService } from "../mod.ts";
import { TestClient } from "./helpers/clients.ts";
import {
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { captureLogs } from "./helpers/logs.ts";
import { scrape } from "./helpers/prometheus.ts";
import { eventually, settles } from "./helpers/waits.ts";

/** Counts onMessage per client; `?limit=off` or `?limit=R/B` override. */
function countingApp(received: Map<string, Message[]>): Application {
  return {
    onHandshake(request) {
      const limit = new URL(request.url).searchParams.get("limit");
      if (limit === null) return;
      if (limit === "off") return { rateLimit: false };
      const [messagesPerSecond, burst] = limit.split("/").map(Number);
      return {
        rateLimit: { messagesPerSecond: messagesPerSecond!, burst: burst! },
      };
    },
    onConnect(clientId, { api }) {
      received.set(clientId, []);
      return api.sendToClient(clientId, `id:${clientId}`);
    },
    onMessage(clientId, message) {
      received.get(clientId)?.push(message);
    },
  };
}

Deno.test("rateLimit closes a client that floods with 1008, and only it", async (t) => {
  await using register = await startLocalRegister();
  const received = new Map<string, Message[]>();
  await using service = await startService(
    countingApp(received),
    localServiceOptions(register.address),
  );
  const url = `http://127.0.0.1:${service.port}/metrics`;

  await t.step(
    '1,000 messages at once: closed with 1008 "rate limit"',
    async () => {
      await using bystander = await TestClient.connect(service.port);
      await using flooder = await TestClient.connect(service.port);
      for (let i = 0; i < 1000; i++) flooder.socket.send(`m${i}`);
      const event = await settles("the flooder is closed", flooder.closed);
      assert.equal(event.code, 1008);
      assert.equal(event.reason, "rate limit");
      // The default burst went through; nothing past the bucket did.
      const got = received.get(flooder.id)!;
      assert.ok(got.length <= 201, `${got.length} reached onMessage`);
      assert.ok(got.length >= 199, `${got.length} reached onMessage`);
      assert.equal(await service.api.isOnline(flooder.id), false);
      // Nobody else noticed.
      bystander.socket.send("still here");
      await eventually(
        "the bystander's message arrives",
        () => received.get(bystander.id)?.includes("still here") === true,
      );
      assert.equal(bystander.socket.readyState, WebSocket.OPEN);
      assert.equal(
        (await scrape(url)).value("wsgate_rate_limit_closes_total"),
        1,
      );
    },
  );

  await t.step(
    "50 a second for ten seconds: never closed, all arrive",
    async () => {
      await using steady = await TestClient.connect(service.port);
      for (let i = 0; i < 500; i++) {
        steady.socket.send(`s${i}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await eventually(
        "all 500 reach onMessage",
        () => received.get(steady.id)?.length === 500,
      );
      assert.deepEqual(
        received.get(steady.id),
        Array.from({ length: 500 }, (_, i) => `s${i}`),
      );
      assert.equal(steady.socket.readyState, WebSocket.OPEN);
      assert.equal(
        (await scrape(url)).value("wsgate_rate_limit_closes_total"),
        1,
      );
    },
  );

  await t.step("onHandshake gives one client other limits", async () => {
    await using trusted = await TestClient.connect(
      service.port,
      "/?limit=off",
    );
    for (let i = 0; i < 1000; i++) trusted.socket.send(`t${i}`);
    await eventually(
      "all 1,000 arrive",
      () => received.get(trusted.id)?.length === 1000,
    );
    await using strict = await TestClient.connect(service.port, "/?limit=1/5");
    for (let i = 0; i < 10; i++) strict.socket.send(`x${i}`);
    const event = await settles("the strict client is closed", strict.closed);
    assert.equal(event.code, 1008);
    assert.equal(received.get(strict.id)!.length, 5);
    assert.equal(trusted.socket.readyState, WebSocket.OPEN);
  });

  await t.step("a bad limit from onHandshake refuses that client", async () => {
    using logs = captureLogs(/ ERROR service \S+: onHandshake failed /);
    await assert.rejects(
      TestClient.connect(service.port, "/?limit=0/0"),
    );
    assert.equal(logs.lines.length, 1, logs.lines.join("\n"));
    assert.match(
      logs.lines[0]!,
      /RangeError: Cannot accept a client with the rateLimit from onHandshake: 'rateLimit' must be /,
    );
  });
});

Deno.test("rateLimit false turns it off; a bad value is refused at start", async () => {
  await using register = await startLocalRegister();
  const received = new Map<string, Message[]>();
  await using service = await startService(
    countingApp(received),
    localServiceOptions(register.address, { rateLimit: false }),
  );
  await using client = await TestClient.connect(service.port);
  for (let i = 0; i < 1000; i++) client.socket.send(`m${i}`);
  await eventually(
    "all 1,000 arrive",
    () => received.get(client.id)?.length === 1000,
  );
  await assert.rejects(
    startService({}, {
      ...localServiceOptions(register.address),
      rateLimit: { messagesPerSecond: 0, burst: 10 },
    }),
    /'rateLimit' must be/,
  );
});

Deno.test("maxQueuedMessages bounds what waits for onMessage; a closed client's queue is dropped", async () => {
  await using register = await startLocalRegister();
  const started: string[] = [];
  const gate = Promise.withResolvers<void>();
  const app: Application = {
    onConnect(clientId, { api }) {
      return api.sendToClient(clientId, `id:${clientId}`);
    },
    async onMessage(_clientId, message) {
      started.push(String(message));
      await gate.promise; // the application is stuck
    },
  };
  await using service = await startService(
    app,
    localServiceOptions(register.address, {
      rateLimit: false,
      maxQueuedMessages: 16,
    }),
  );
  await using client = await TestClient.connect(service.port);
  for (let i = 0; i < 5000; i++) client.socket.send(`m${i}`);
  await eventually("the first onMessage runs", () => started.length === 1);
  // The service stopped reading: what it took from the socket is the one
  // message in onMessage, the 16 that wait, and what was in its read
  // buffer then, not all 5,000.
  await new Promise((resolve) => setTimeout(resolve, 300));
  const metrics = await scrape(`http://127.0.0.1:${service.port}/metrics`);
  const read = metrics.value("wsgate_messages_received_total");
  assert.ok(read < 1000, `${read} messages were read while onMessage hung`);
  // The service closes the client: what waits is dropped.
  await service.api.closeClient(client.id);
  await settles("the client is closed", client.closed);
  gate.resolve();
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.deepEqual(started, ["m0"]);
});
