// Operator endpoints: /healthz and /metrics on services and the register,
// read the way a load balancer and Prometheus read them.

import assert from "node:assert/strict";
import { type Application, startService } from "../mod.ts";
import { TestClient } from "./helpers/clients.ts";
import {
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { eventually } from "./helpers/waits.ts";
import { scrape } from "./helpers/prometheus.ts";

const quiet = { logLevel: "error" } as const;

/** Greets with the clientId; relays every message to the whole cluster. */
const relay: Application = {
  async onConnect(clientId, { api }) {
    await api.sendToClient(clientId, `id:${clientId}`);
  },
  async onMessage(_clientId, message, { api }) {
    await api.sendToAll(message);
  },
};

async function health(
  url: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.json() };
}

Deno.test("GET /healthz on a service answers 503 until it has joined, then 200", async () => {
  // A register port that nobody listens on yet, and a WebSocket port known
  // before startService() resolves.
  const probe = await startLocalRegister(quiet);
  const registerPort = probe.port;
  await probe.close();
  const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = free.addr.port;
  free.close();

  // startService() resolves only once the service has joined.
  const starting = startService(
    relay,
    localServiceOptions(`127.0.0.1:${registerPort}`, { port, ...quiet }),
  );
  const url = `http://127.0.0.1:${port}/healthz`;
  let before: Awaited<ReturnType<typeof health>> | undefined;
  await eventually("the WebSocket port listens", async () => {
    before = await health(url);
    return true;
  });
  assert.equal(before!.status, 503);
  assert.equal(before!.body.status, "starting");
  const upgrade = await fetch(`http://127.0.0.1:${port}/`, {
    headers: {
      connection: "upgrade",
      upgrade: "websocket",
      "sec-websocket-version": "13",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    },
  });
  await upgrade.body?.cancel();
  assert.equal(upgrade.status, 503, "no client is accepted before joining");

  await using _register = await startLocalRegister({
    port: registerPort,
    ...quiet,
  });
  await using service = await starting;
  assert.equal(before!.body.nodeId, service.nodeId);
  const now = await health(url);
  assert.equal(now.status, 200);
  assert.equal(now.body.status, "ready");
  assert.equal(now.body.members, 1);
  const metrics = await scrape(`http://127.0.0.1:${service.port}/metrics`);
  assert.equal(metrics.value("wsgate_ready"), 1);
});

Deno.test("GET /metrics on a service counts connections, messages, Api calls and peer latency", async () => {
  await using register = await startLocalRegister(quiet);
  const options = localServiceOptions(register.address, quiet);
  await using a = await startService(relay, options);
  await using b = await startService(relay, options);
  await eventually(
    "both services see each other",
    async () =>
      await a.api.getAllClientCount() === 0 &&
      (await scrape(`http://127.0.0.1:${a.port}/metrics`)).value(
          "wsgate_members",
        ) === 2,
  );

  await using onA = await TestClient.connect(a.port);
  await using onB = await TestClient.connect(b.port);
  const sent = ["one", "two", "three!"];
  for (const text of sent) onA.socket.send(text);
  assert.deepEqual(await onA.take(3), sent);
  assert.deepEqual(await onB.take(3), sent);
  assert.equal(await a.api.getAllClientCount(), 2);
  await assert.rejects(a.api.bindUid("not-a-client-id", "u"));

  const m = await scrape(`http://127.0.0.1:${a.port}/metrics`);
  assert.equal(m.types.get("wsgate_connections"), "gauge");
  assert.equal(m.types.get("wsgate_messages_received_total"), "counter");
  assert.equal(m.types.get("wsgate_peer_rpc_duration_seconds"), "histogram");
  assert.equal(m.value("wsgate_ready"), 1);
  assert.equal(m.value("wsgate_connections"), 1);
  assert.equal(m.value("wsgate_connections_opened_total"), 1);
  assert.equal(m.value("wsgate_connections_closed_total"), 0);
  assert.equal(m.value("wsgate_members"), 2);
  assert.equal(m.value("wsgate_messages_received_total"), 3);
  assert.equal(
    m.value("wsgate_bytes_received_total"),
    sent.join("").length,
  );
  // The greeting and the three relayed messages.
  assert.equal(m.value("wsgate_messages_sent_total"), 4);
  assert.equal(
    m.value("wsgate_api_calls_total", { method: "sendToAll" }),
    3,
  );
  assert.equal(
    m.value("wsgate_api_calls_total", { method: "sendToClient" }),
    1,
  );
  assert.equal(
    m.value("wsgate_api_calls_total", { method: "getAllClientCount" }),
    2,
  );
  assert.equal(
    m.value("wsgate_api_errors_total", { method: "bindUid" }),
    1,
  );
  assert.equal(
    m.value("wsgate_api_errors_total", { method: "sendToAll" }),
    0,
  );
  assert.equal(m.value("wsgate_slow_consumer_closes_total"), 0);

  for (const kind of ["unary", "delivery"]) {
    const buckets = m.buckets("wsgate_peer_rpc_duration_seconds", { kind });
    assert.ok(buckets.length > 2, kind);
    assert.equal(buckets.at(-1)![0], "+Inf");
    for (let i = 1; i < buckets.length; i++) {
      assert.ok(buckets[i]![1] >= buckets[i - 1]![1], "cumulative buckets");
    }
    const count = m.value("wsgate_peer_rpc_duration_seconds_count", { kind });
    assert.equal(buckets.at(-1)![1], count);
    assert.ok(count >= 1, `${kind} calls were timed`);
    // Each call took some time, and none took as long as a deadline.
    const sum = m.value("wsgate_peer_rpc_duration_seconds_sum", { kind });
    assert.ok(sum > 0 && sum < 2 * count, `${kind}: ${sum} s for ${count}`);
  }

  const mb = await scrape(`http://127.0.0.1:${b.port}/metrics`);
  assert.equal(mb.value("wsgate_messages_received_total"), 0);
  assert.equal(mb.value("wsgate_messages_sent_total"), 4);
  assert.equal(mb.value("wsgate_api_calls_total", { method: "sendToAll" }), 0);

  await onA.close();
  await eventually(
    "the close is counted",
    async () =>
      (await scrape(`http://127.0.0.1:${a.port}/metrics`)).value(
        "wsgate_connections_closed_total",
      ) === 1,
  );
});

Deno.test("GET /healthz and /metrics on the register's httpPort", async () => {
  await using register = await startLocalRegister({ httpPort: 0, ...quiet });
  assert.ok(register.httpPort !== undefined && register.httpPort > 0);
  const base = `http://127.0.0.1:${register.httpPort}`;
  const options = localServiceOptions(register.address, quiet);
  await using _a = await startService({}, options);
  await using _b = await startService({}, options);

  const ready = await health(`${base}/healthz`);
  assert.equal(ready.status, 200);
  assert.equal(ready.body.status, "ready");
  assert.equal(ready.body.members, 2);

  const m = await scrape(`${base}/metrics`);
  assert.equal(m.value("wsgate_register_members"), 2);
  assert.equal(m.value("wsgate_register_joins_total"), 2);
  assert.equal(m.value("wsgate_register_leaves_total"), 0);
  assert.ok(m.value("wsgate_register_member_list_version") >= 2);

  const other = await fetch(`${base}/nope`);
  await other.body?.cancel();
  assert.equal(other.status, 404);
});

Deno.test("startRegister() without httpPort serves no HTTP", async () => {
  await using register = await startLocalRegister(quiet);
  assert.equal(register.httpPort, undefined);
});

Deno.test("startService() fetch option answers plain HTTP; built-in routes stay", async (t) => {
  await using register = await startLocalRegister(quiet);
  const options = localServiceOptions(register.address, quiet);
  await t.step("with fetch", async () => {
    await using service = await startService(relay, {
      ...options,
      fetch: (request) => new Response(`page ${new URL(request.url).pathname}`),
    });
    const page = await fetch(`http://127.0.0.1:${service.port}/index.html`);
    assert.equal(await page.text(), "page /index.html");
    const api = await fetch(`http://127.0.0.1:${service.port}/api/x`);
    assert.equal(await api.text(), "page /api/x", "the HTTP API is off");
    const healthz = await health(`http://127.0.0.1:${service.port}/healthz`);
    assert.equal(healthz.status, 200);
    await using client = await TestClient.connect(service.port);
    assert.ok(client.id.startsWith(service.nodeId));
  });
  await t.step("without fetch", async () => {
    await using service = await startService(relay, options);
    const page = await fetch(`http://127.0.0.1:${service.port}/`);
    await page.body?.cancel();
    assert.equal(page.status, 426);
    const post = await fetch(`http://127.0.0.1:${service.port}/metrics`, {
      method: "POST",
    });
    await post.body?.cancel();
    assert.equal(post.status, 405);
  });
  await t.step("a bad fetch option is refused at once", async () => {
    await assert.rejects(
      startService(relay, {
        ...options,
        fetch: "nope" as unknown as () => Response,
      }),
      TypeError,
    );
  });
});
