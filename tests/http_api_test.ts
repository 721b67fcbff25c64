// The HTTP+JSON push API: POST /api/<method> with a bearer secret, mapped
// to the same cluster Api as business code's calls.

import assert from "node:assert/strict";
import { type Application, startService } from "../mod.ts";
import { TestClient } from "./helpers/clients.ts";
import {
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { eventually } from "./helpers/waits.ts";
import { scrape } from "./helpers/prometheus.ts";

const SECRET = "backend-token";

/** Greets with the clientId and binds the uid given in `?uid=`. */
const app: Application = {
  async onConnect(clientId, { api, request }) {
    const uid = new URL(request.url).searchParams.get("uid");
    if (uid !== null) await api.bindUid(clientId, uid);
    await api.sendToClient(clientId, `id:${clientId}`);
  },
};

async function connect(port: number, uid: string): Promise<TestClient> {
  const client = new TestClient(`ws://127.0.0.1:${port}/?uid=${uid}`);
  const greeting = await client.next();
  assert.ok(typeof greeting === "string" && greeting.startsWith("id:"));
  client.id = greeting.slice(3);
  return client;
}

Deno.test("POST /api/<method> reaches the cluster Api", async (t) => {
  await using register = await startLocalRegister({ logLevel: "error" });
  const options = localServiceOptions(register.address, { logLevel: "error" });
  await using a = await startService(app, {
    ...options,
    httpApiSecret: SECRET,
  });
  await using b = await startService(app, options);
  await eventually("both services see each other", async () => {
    const health = await fetch(`http://127.0.0.1:${a.port}/healthz`);
    return (await health.json()).members === 2;
  });
  await using alice = await connect(b.port, "alice");

  /** Nothing reached alice before a marker sent after what was tried. */
  async function expectNothingSent(why: string): Promise<void> {
    await a.api.sendToClient(alice.id, "marker");
    assert.equal(await alice.next(), "marker", why);
  }

  async function post(
    method: string,
    body: unknown,
    headers: Record<string, string> = { authorization: `Bearer ${SECRET}` },
  ) {
    const response = await fetch(`http://127.0.0.1:${a.port}/api/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
    return { status: response.status, body: await response.json() };
  }

  await t.step("sends to a uid on another service", async () => {
    const sent = await post("sendToUid", { uid: "alice", message: "hi" });
    assert.deepEqual(sent, { status: 200, body: { result: null } });
    assert.equal(await alice.next(), "hi");
  });

  await t.step("sends binary frames from base64", async () => {
    const sent = await post("sendToClient", {
      clientId: alice.id,
      messageBase64: btoa("\x00\x01\xff"),
    });
    assert.equal(sent.status, 200);
    assert.deepEqual(await alice.next(), new Uint8Array([0, 1, 255]));
  });

  await t.step("answers queries with { result }", async () => {
    assert.deepEqual(await post("getAllClientCount", {}), {
      status: 200,
      body: { result: 1 },
    });
    assert.deepEqual(
      (await post("joinGroup", { clientId: alice.id, group: "g" })).body,
      { result: null },
    );
    assert.deepEqual((await post("getUidsByGroup", { group: "g" })).body, {
      result: ["alice"],
    });
    assert.deepEqual(
      (await post("getUidByClientId", { clientId: `${a.nodeId}.999` })).body,
      { result: null },
    );
    await post("setInfo", { clientId: alice.id, info: { plan: "pro" } });
    assert.deepEqual((await post("getInfo", { clientId: alice.id })).body, {
      result: { plan: "pro" },
    });
    const sent = await post("sendToGroup", {
      group: ["g", "h"],
      message: "to g",
    });
    assert.equal(sent.status, 200);
    assert.equal(await alice.next(), "to g");
  });

  await t.step("refuses a missing or wrong secret with 401", async () => {
    const missing = await post("sendToUid", { uid: "alice", message: "x" }, {});
    assert.equal(missing.status, 401);
    assert.equal(missing.body.error.code, "unauthenticated");
    const wrong = await post("sendToUid", { uid: "alice", message: "x" }, {
      authorization: "Bearer nope",
    });
    assert.equal(wrong.status, 401);
    const metrics = await scrape(`http://127.0.0.1:${a.port}/metrics`);
    assert.equal(metrics.value("wsgate_http_api_unauthorized_total"), 2);
    assert.equal(
      metrics.value("wsgate_api_calls_total", { method: "sendToUid" }),
      1,
    );
  });

  await t.step("rejects bad requests with 400, 404 and 405", async () => {
    const notJson = await post("sendToUid", "{nope");
    assert.equal(notJson.status, 400);
    assert.equal(notJson.body.error.code, "invalid_argument");
    const wrongType = await post("sendToUid", { uid: 7, message: "x" });
    assert.equal(wrongType.status, 400);
    assert.match(wrongType.body.error.message, /"uid" must be a string/);
    const noMessage = await post("sendToUid", { uid: "alice" });
    assert.equal(noMessage.status, 400);
    const badId = await post("sendToClient", {
      clientId: "x",
      message: "x",
    });
    assert.equal(badId.status, 400, "the Api's own validation applies");
    const unknown = await post("constructor", {});
    assert.equal(unknown.status, 404);
    assert.match(unknown.body.error.message, /no such method/);
    const get = await fetch(`http://127.0.0.1:${a.port}/api/getAllUid`, {
      headers: { authorization: `Bearer ${SECRET}` },
    });
    await get.body?.cancel();
    assert.equal(get.status, 405);
    await expectNothingSent("nothing was sent");
  });

  await t.step("is off on a service without httpApiSecret", async () => {
    const response = await fetch(`http://127.0.0.1:${b.port}/api/sendToUid`, {
      method: "POST",
      headers: { authorization: `Bearer ${SECRET}` },
      body: JSON.stringify({ uid: "alice", message: "x" }),
    });
    await response.body?.cancel();
    assert.equal(response.status, 426);
    await expectNothingSent("nothing was sent through b");
  });
});

Deno.test("startService() refuses an empty httpApiSecret", async () => {
  await assert.rejects(
    startService(app, { register: "127.0.0.1:1", httpApiSecret: "" }),
    TypeError,
  );
});
