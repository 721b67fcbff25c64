// Cluster routing (internal/cluster/) over services connected in memory:
// calls about one client reach only the service that holds it, calls about
// everyone ask every peer once and merge, sends reach each client once
// with exclusions applied on every service, the caller's own included, and
// failures come back as IncompleteResultError with what the others said.

import assert from "node:assert/strict";
import { GatewayError, IncompleteResultError } from "../../mod.ts";
import { memoryCluster, type MemoryNode } from "../helpers/memory_cluster.ts";

/** Three services A, B, C with two clients each. */
function threeServices() {
  const [a, b, c] = memoryCluster(3) as [MemoryNode, MemoryNode, MemoryNode];
  const clients = {
    a1: a.connect(),
    a2: a.connect(),
    b1: b.connect(),
    b2: b.connect(),
    c1: c.connect(),
    c2: c.connect(),
  };
  return { a, b, c, clients };
}

/** Lets queued deliveries be applied. */
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

Deno.test("calls about one client reach only the service that holds it", async () => {
  const { a, b, c, clients } = threeServices();
  await a.api.bindUid(clients.b1, "bob");
  await a.api.joinGroup(clients.b1, "room");
  await a.api.setInfo(clients.b1, { plan: "pro" });
  await a.api.updateInfo(clients.b1, { region: "eu" });
  assert.equal(await a.api.getUidByClientId(clients.b1), "bob");
  assert.equal(await a.api.isOnline(clients.b1), true);
  assert.deepEqual(await a.api.getInfo(clients.b1), {
    plan: "pro",
    region: "eu",
  });
  assert.deepEqual(b.asked, [
    "bindUid",
    "joinGroup",
    "setInfo",
    "updateInfo",
    "getUidByClientId",
    "isOnline",
    "getInfo",
  ]);
  assert.deepEqual(c.asked, [], "C holds none of it");
  assert.equal(b.hub.uidOf(clients.b1), "bob");

  // About a local client, nobody is asked.
  await a.api.bindUid(clients.a1, "ann");
  assert.equal(await a.api.getUidByClientId(clients.a1), "ann");
  assert.equal(b.asked.length + c.asked.length, 7);

  // A well-formed clientId of a service that is not a member is offline.
  const stranger = "0123456789ab.1";
  assert.equal(await a.api.isOnline(stranger), false);
  assert.equal(await a.api.getInfo(stranger), undefined);
  await a.api.bindUid(stranger, "nobody");
  assert.equal(b.asked.length + c.asked.length, 7);

  // A client that left its service is offline there.
  b.hub.remove(clients.b2);
  assert.equal(await a.api.isOnline(clients.b2), false);
  assert.equal(await a.api.getUidByClientId(clients.b2), undefined);
});

Deno.test("calls about everyone ask each peer once and merge the answers", async () => {
  const { a, b, c, clients } = threeServices();
  for (
    const [id, uid] of [[clients.a1, "u1"], [clients.b1, "u1"], [
      clients.c1,
      "u2",
    ]]
  ) {
    await a.api.bindUid(id!, uid!);
    await a.api.joinGroup(id!, "g");
  }
  a.asked.length = b.asked.length = c.asked.length = 0;
  assert.equal(await a.api.getAllClientCount(), 6);
  assert.equal((await a.api.getAllClientIds()).length, 6);
  assert.deepEqual((await a.api.getAllUids()).sort(), ["u1", "u2"]);
  assert.deepEqual((await a.api.getAllUid()).sort(), ["u1", "u2"]);
  assert.equal(await a.api.getAllUidCount(), 2, "u1 is on two services");
  assert.equal(await a.api.getClientCountByGroup("g"), 3);
  assert.deepEqual(
    (await a.api.getClientIdsByGroup("g")).sort(),
    [clients.a1, clients.b1, clients.c1].sort(),
  );
  assert.deepEqual((await a.api.getUidsByGroup("g")).sort(), ["u1", "u2"]);
  assert.equal(await a.api.getUidCountByGroup("g"), 2);
  assert.deepEqual(
    (await a.api.getClientIdsByUid("u1")).sort(),
    [clients.a1, clients.b1].sort(),
  );
  assert.deepEqual(await a.api.getAllGroups(), ["g"]);
  assert.deepEqual(
    Object.keys(await a.api.getClientInfosByGroup("g")).length,
    3,
  );
  assert.equal(Object.keys(await a.api.getAllClientInfos()).length, 6);
  // Thirteen calls above asked the peers, each peer once per call.
  assert.equal(b.asked.length, 13);
  assert.deepEqual(b.asked, c.asked);
  assert.deepEqual(a.asked, []);

  // A uid held here needs nobody else.
  b.asked.length = 0;
  assert.equal(await a.api.isUidOnline("u1"), true);
  assert.deepEqual(b.asked, []);
  assert.equal(await a.api.isUidOnline("u2"), true);
  assert.equal(await a.api.isUidOnline("nobody"), false);

  await a.api.ungroup("g");
  assert.equal(await c.api.getClientCountByGroup("g"), 0);
  assert.equal(c.hub.groupCount + b.hub.groupCount + a.hub.groupCount, 0);
});

Deno.test("sends reach each client once, and exclusions hold on every service", async () => {
  const { a, b, c, clients } = threeServices();
  await a.api.sendToAll("to all but a1 and b1", {
    exclude: [clients.a1, clients.b1],
  });
  await settle();
  for (
    const [node, id, got] of [
      [a, clients.a1, false],
      [a, clients.a2, true],
      [b, clients.b1, false],
      [b, clients.b2, true],
      [c, clients.c1, true],
    ] as const
  ) {
    assert.deepEqual(
      node.sent(id),
      got ? ["to all but a1 and b1"] : [],
      `${id} ${got ? "gets" : "is excluded from"} sendToAll`,
    );
  }

  for (const id of [clients.a1, clients.a2, clients.b1, clients.c1]) {
    await a.api.joinGroup(id, "room");
  }
  await a.api.sendToGroup(["room", "room"], "to the room but a2", {
    exclude: [clients.a2],
  });
  await settle();
  assert.deepEqual(a.sent(clients.a1).at(-1), "to the room but a2");
  assert.equal(
    a.sent(clients.a2).filter((m) => m === "to the room but a2").length,
    0,
    "the caller's own client is excluded",
  );
  assert.deepEqual(b.sent(clients.b1), ["to the room but a2"]);
  assert.deepEqual(c.sent(clients.c2), ["to all but a1 and b1"]);

  await a.api.bindUid(clients.b2, "bob");
  await a.api.bindUid(clients.c2, "bob");
  const before = c.delivered;
  await a.api.sendToUid(["bob"], "to bob");
  await a.api.sendToUid([], "to nobody");
  await settle();
  assert.equal(b.sent(clients.b2).at(-1), "to bob");
  assert.equal(c.sent(clients.c2).at(-1), "to bob");
  assert.equal(c.delivered - before, 1, "an empty list reaches no service");

  // To one client: only its service gets a delivery.
  const delivered = [a.delivered, b.delivered, c.delivered];
  await a.api.sendToClient(clients.b1, "just b1");
  await settle();
  assert.deepEqual([a.delivered, b.delivered, c.delivered], [
    delivered[0],
    delivered[1]! + 1,
    delivered[2],
  ]);
  assert.equal(b.sent(clients.b1).at(-1), "just b1");

  await a.api.closeClient(clients.c1, "bye");
  await settle();
  assert.equal(c.sent(clients.c1).at(-1), "bye");
  assert.deepEqual(c.sockets.get(clients.c1)!.closed, [1000, ""]);
});

Deno.test("a peer that fails makes calls reject with what the others answered", async () => {
  const { a, b, c, clients } = threeServices();
  c.failure = new GatewayError(
    "unavailable",
    `${c.address}: connection refused`,
  );
  const count = await a.api.getAllClientCount().then(
    () => assert.fail("the call should have been incomplete"),
    (error) => error,
  );
  assert.ok(count instanceof IncompleteResultError);
  assert.equal(count.partial, 4);
  assert.deepEqual(count.failures.map((f) => f.address), [c.address]);
  assert.equal(count.failures[0]!.error.code, "unavailable");

  const send = await a.api.sendToAll("still for the others").then(
    () => undefined,
    (error) => error,
  );
  assert.ok(send instanceof IncompleteResultError);
  assert.equal(send.partial, undefined);
  await settle();
  assert.deepEqual(b.sent(clients.b1), ["still for the others"]);
  assert.deepEqual(a.sent(clients.a1), ["still for the others"]);

  // About one of its clients, the owner's error as it is.
  await assert.rejects(
    a.api.getInfo(clients.c1),
    (error) => error instanceof GatewayError && error.code === "unavailable",
  );
});

Deno.test("bad arguments reject, never throw, and nobody is asked", async () => {
  const { a, b, c, clients } = threeServices();
  const loose = a.api as unknown as Record<
    string,
    (...args: unknown[]) => Promise<unknown>
  >;
  const calls: [string, unknown[]][] = [
    ["bindUid", [clients.b1, ""]],
    ["bindUid", ["not an id", "u"]],
    ["joinGroup", [clients.b1, 7]],
    ["sendToAll", [42]],
    ["sendToAll", ["x", { exclude: ["not an id"] }]],
    ["sendToClient", [clients.b1, "x".repeat(1025)]],
    ["getClientCountByGroup", [""]],
    ["setInfo", [clients.b1, { n: 1 }]],
    ["closeClient", [clients.b1, 5]],
  ];
  for (const [name, args] of calls) {
    let result: Promise<unknown>;
    try {
      result = loose[name]!(...args);
    } catch (error) {
      assert.fail(`${name} threw: ${error}`);
    }
    await assert.rejects(
      result,
      (error) =>
        error instanceof GatewayError && error.code === "invalid_argument",
      name,
    );
  }
  await settle();
  assert.deepEqual([...b.asked, ...c.asked], []);
  assert.equal(b.delivered + c.delivered, 0);
});
