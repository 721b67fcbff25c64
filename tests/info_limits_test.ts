// Bounds of info maps (maxInfoKeys, maxInfoBytes) across two services in
// this process, with real WebSocket clients and real gRPC between them: a
// call that would take a map past them is refused with invalid_argument
// wherever it comes from, and leaves the map; and queries about the infos
// of every client still answer with many clients at the bound, even where
// the answer of one peer is larger than the largest request a service
// reads.

import assert from "node:assert/strict";
import { GatewayError, type Service, startService } from "../mod.ts";
import { TestClient } from "./helpers/clients.ts";
import {
  greeter,
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { captureLogs } from "./helpers/logs.ts";
import { eventually } from "./helpers/waits.ts";

const SECRET = "backend-token";
/**
 * Small peer queues and sends: each service reads requests (and, before the
 * info bounds, its peers' answers) of at most 4 × 256 KiB = 1 MiB.
 */
const SMALL_REQUESTS = {
  maxPeerQueueBytes: 256 * 1024,
  maxSendBytes: 256 * 1024,
};

/** An info map of `keys` keys `k0`, `k1`, ... with empty values. */
function keys(count: number, from = 0): Record<string, string> {
  const info: Record<string, string> = {};
  for (let i = from; i < from + count; i++) info[`k${i}`] = "";
  return info;
}

/** Rejects with a GatewayError `invalid_argument` whose message matches. */
async function refused(call: Promise<unknown>, pattern: RegExp) {
  await assert.rejects(call, (error) => {
    assert.ok(error instanceof GatewayError, String(error));
    assert.equal(error.code, "invalid_argument", error.message);
    assert.match(error.message, pattern);
    return true;
  });
}

async function untilPeers(a: Service, b: Service): Promise<void> {
  await eventually("both services see each other", async () => {
    for (const service of [a, b]) {
      const health = await fetch(`http://127.0.0.1:${service.port}/healthz`);
      if ((await health.json()).members !== 2) return false;
    }
    return true;
  });
}

Deno.test("Api.setInfo() and updateInfo() past maxInfoKeys or maxInfoBytes are refused on every path, and the map stays", async (t) => {
  await using register = await startLocalRegister({ logLevel: "error" });
  const options = localServiceOptions(register.address, {
    logLevel: "error",
    ...SMALL_REQUESTS,
  });
  await using a = await startService({}, {
    ...options,
    httpApiSecret: SECRET,
  });
  await using b = await startService(greeter, options);
  await untilPeers(a, b);
  await using client = await TestClient.connect(b.port);
  const id = client.id;
  const owner = new RegExp(
    `^127\\.0\\.0\\.1:\\d+: Cannot update info: the info of client "${
      id.replace(".", "\\.")
    }" would have`,
  );

  await t.step("keys: a merge on the owner, asked through a peer", async () => {
    await a.api.setInfo(id, keys(64));
    await refused(
      a.api.updateInfo(id, { k64: "" }),
      new RegExp(
        `${owner.source} 65 keys, more than the limit of 64 \\(maxInfoKeys\\); it has 64 now$`,
      ),
    );
    assert.deepEqual(await a.api.getInfo(id), keys(64));
    // Keys it has do not count again; the owner itself refuses the same.
    await a.api.updateInfo(id, { k0: "zero" });
    await refused(b.api.updateInfo(id, keys(2, 100)), /66 keys/);
    assert.deepEqual(await b.api.getInfo(id), { ...keys(64), k0: "zero" });
  });

  await t.step(
    "bytes: a merge on the owner, asked through a peer",
    async () => {
      // 16384 bytes exactly: the key "big" and 16381 bytes of value.
      await a.api.setInfo(id, { big: "x".repeat(16381) });
      await refused(
        a.api.updateInfo(id, { y: "" }),
        new RegExp(
          `${owner.source} 16385 bytes of keys and values, more than the limit of 16384 \\(maxInfoBytes\\); it has 16384 now$`,
        ),
      );
      // A value in UTF-8: "€" takes 3 bytes.
      await refused(a.api.updateInfo(id, { big: "€".repeat(5461) }), /16386/);
      assert.deepEqual(await a.api.getInfo(id), { big: "x".repeat(16381) });
      await a.api.updateInfo(id, { big: "€".repeat(5460) + "x" }); // 16384
      assert.equal((await a.api.getInfo(id))!.big!.length, 5461);
    },
  );

  await t.step(
    "a map past the bounds by itself is refused before it is sent",
    async () => {
      await a.api.setInfo(id, { kept: "yes" });
      await refused(
        a.api.setInfo(id, keys(65)),
        /^Cannot set info: info has 65 keys, more than the limit of 64 \(maxInfoKeys\)$/,
      );
      await refused(
        a.api.updateInfo(id, { v: "x".repeat(16384) }),
        /^Cannot update info: info has 16385 bytes of keys and values, more than the limit of 16384 \(maxInfoBytes\)$/,
      );
      // 2 MiB: more than b reads in one request (1 MiB), so b would answer
      // resource_exhausted had a sent it.
      await refused(
        a.api.setInfo(id, { v: "x".repeat(2 * 1024 * 1024) }),
        /^Cannot set info: info has 2097153 bytes .* \(maxInfoBytes\)$/,
      );
      assert.deepEqual(await a.api.getInfo(id), { kept: "yes" });
    },
  );

  await t.step("the HTTP API answers 400 with the same message", async () => {
    const response = await fetch(`http://127.0.0.1:${a.port}/api/updateInfo`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        authorization: `Bearer ${SECRET}`,
      },
      body: JSON.stringify({ clientId: id, info: keys(64) }),
    });
    assert.equal(response.status, 400);
    const { error } = await response.json();
    assert.equal(error.code, "invalid_argument");
    assert.match(
      error.message,
      /65 keys, more than the limit of 64 \(maxInfoKeys\); it has 1 now$/,
    );
    assert.deepEqual(await a.api.getInfo(id), { kept: "yes" });
  });
});

Deno.test("Api.getAllClientInfos() and getClientInfosByGroup() answer for 200 clients at maxInfoBytes on another service", async () => {
  await using register = await startLocalRegister({ logLevel: "error" });
  const options = localServiceOptions(register.address, {
    logLevel: "error",
    ...SMALL_REQUESTS,
  });
  await using a = await startService({}, options);
  await using b = await startService(greeter, options);
  await untilPeers(a, b);
  const clients: TestClient[] = [];
  try {
    for (let i = 0; i < 200; i += 20) {
      clients.push(
        ...await Promise.all(
          Array.from({ length: 20 }, () => TestClient.connect(b.port)),
        ),
      );
    }
    // Each map is at the bound: 16384 bytes, the key "blob" and the rest.
    const blob = (i: number) => String(i).padEnd(16380, "x");
    for (let i = 0; i < clients.length; i += 20) {
      await Promise.all(
        clients.slice(i, i + 20).map((c, j) =>
          Promise.all([
            a.api.setInfo(c.id, { blob: blob(i + j) }),
            a.api.joinGroup(c.id, "all"),
          ])
        ),
      );
    }
    // b's answer is about 3.2 MiB, more than a reads in one request.
    const started = performance.now();
    const all = await a.api.getAllClientInfos();
    const allMs = performance.now() - started;
    assert.equal(Object.keys(all).length, 200);
    clients.forEach((c, i) => assert.equal(all[c.id]?.blob, blob(i), c.id));
    const group = await a.api.getClientInfosByGroup("all");
    assert.equal(Object.keys(group).length, 200);
    assert.equal(group[clients[199]!.id]?.blob, blob(199));
    console.log(
      `getAllClientInfos() of 200 clients × 16 KiB on a peer: ${
        allMs.toFixed(0)
      } ms`,
    );
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
});

Deno.test("the info that onHandshake gives a client is bounded too", async () => {
  await using register = await startLocalRegister();
  await using service = await startService(
    {
      ...greeter,
      onHandshake(request) {
        const count = Number(new URL(request.url).searchParams.get("keys"));
        return { info: keys(count) };
      },
    },
    localServiceOptions(register.address, { maxInfoKeys: 8 }),
  );
  await using fits = await TestClient.connect(service.port, "/?keys=8");
  assert.equal(fits.socket.readyState, WebSocket.OPEN);
  // Past the bound, the handshake is refused (500, logged as the hook's).
  using logs = captureLogs(/ ERROR service \S+: onHandshake failed /);
  const refusal = await fetch(`http://127.0.0.1:${service.port}/?keys=9`, {
    headers: {
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
    },
  });
  assert.equal(refusal.status, 500);
  await refusal.body?.cancel();
  assert.equal(await service.api.getAllClientCount(), 1);
  assert.equal(logs.lines.length, 1, logs.lines.join("\n"));
  assert.match(
    logs.lines[0]!,
    /Cannot accept a client with the info from onHandshake: info has 9 keys, more than the limit of 8 \(maxInfoKeys\)/,
  );
});
