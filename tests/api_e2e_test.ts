// End to end: a register and three service processes, real WebSocket
// clients on each, and every Api method called from a fourth service (this
// test process) that holds none of the clients concerned.

import assert from "node:assert/strict";
import { type Api, GatewayError, type Message, startService } from "../mod.ts";
import { TestClient } from "./helpers/clients.ts";
import {
  greeter,
  localServiceOptions,
  startCaller,
} from "./helpers/local_cluster.ts";
import {
  startRegisterProcess,
  startServiceProcess,
} from "./helpers/processes.ts";
import { eventually, untilClientCount } from "./helpers/waits.ts";

const bytes = (...values: number[]) => new Uint8Array(values);

/** Reads one message from each client and checks it. */
async function expectEach(
  clients: TestClient[],
  expected: Message,
): Promise<void> {
  for (const client of clients) {
    assert.deepEqual(await client.next(), expected, `client ${client.id}`);
  }
}

/**
 * Sends a marker to each client and checks that it is the very next message:
 * nothing else was delivered to them before it.
 */
async function expectNothingBefore(
  api: Api,
  clients: TestClient[],
): Promise<void> {
  for (const client of clients) {
    await api.sendToClient(client.id, `marker:${client.id}`);
    assert.equal(await client.next(), `marker:${client.id}`, client.id);
  }
}

Deno.test("Api reaches every client of a three-service cluster", async (t) => {
  const register = await startRegisterProcess();
  const services = await Promise.all(
    [0, 1, 2].map(() => startServiceProcess(register.address)),
  );
  const clients: TestClient[] = [];
  try {
    await using caller = await startCaller(register.address, {
      logLevel: "warn",
    });
    const api = caller.api;
    for (const { info } of services) {
      clients.push(await TestClient.connect(info.port));
      clients.push(await TestClient.connect(info.port));
    }
    const [a1, a2, b1, b2, c1, c2] = clients as [
      TestClient,
      TestClient,
      TestClient,
      TestClient,
      TestClient,
      TestClient,
    ];
    await untilClientCount(api, 6, "the caller sees all six clients");

    await t.step("clientIds name their service and are unique", () => {
      const ids = new Set(clients.map((c) => c.id));
      assert.equal(ids.size, 6);
      services.forEach(({ info }, i) => {
        assert.ok(clients[2 * i]!.id.startsWith(info.nodeId));
        assert.ok(clients[2 * i + 1]!.id.startsWith(info.nodeId));
      });
    });

    await t.step(
      "getAllClientIds(), getAllClientCount(), isOnline()",
      async () => {
        assert.deepEqual(
          (await api.getAllClientIds()).sort(),
          clients.map((c) => c.id).sort(),
        );
        assert.equal(await api.getAllClientCount(), 6);
        for (const client of clients) {
          assert.equal(await api.isOnline(client.id), true);
        }
      },
    );

    await t.step("sendToClient() keeps text, binary and order", async () => {
      const sent: Message[] = [];
      const pending: Promise<void>[] = [];
      for (let i = 0; i < 200; i++) {
        const message = i % 3 === 0 ? bytes(i & 0xff, 1, 2) : `m${i}`;
        sent.push(message);
        pending.push(api.sendToClient(b1.id, message));
      }
      await Promise.all(pending);
      assert.deepEqual(await b1.take(200), sent);
      await expectNothingBefore(api, [a1, a2, b2, c1, c2]);
    });

    await t.step(
      "onMessage() gets strings for text and bytes for binary",
      async () => {
        c2.socket.send("hi");
        assert.equal(await c2.next(), "echo:hi");
        c2.socket.send(bytes(7, 8));
        assert.deepEqual(await c2.next(), bytes(0xec, 7, 8));
      },
    );

    await t.step("sendToAll() reaches everyone but the excluded", async () => {
      await api.sendToAll("to all");
      await expectEach(clients, "to all");
      await api.sendToAll(bytes(9, 9), { exclude: [a1.id, c2.id] });
      await expectEach([a2, b1, b2, c1], bytes(9, 9));
      await expectNothingBefore(api, clients);
    });

    await t.step(
      "exclusions hold for the calling service's own clients too",
      async () => {
        await using home = await startService(
          greeter,
          localServiceOptions(register.address),
        );
        await using own1 = await TestClient.connect(home.port);
        await using own2 = await TestClient.connect(home.port);
        await untilClientCount(home.api, 8, "home sees every client");
        const everyone = [...clients, own1, own2];
        await home.api.sendToAll("not to own1 nor b2", {
          exclude: [own1.id, b2.id],
        });
        await expectEach(
          everyone.filter((c) => c !== own1 && c !== b2),
          "not to own1 nor b2",
        );
        await home.api.joinGroup(own1.id, "home");
        await home.api.joinGroup(own2.id, "home");
        await home.api.joinGroup(c1.id, "home");
        await home.api.sendToGroup("home", "to home but own2", {
          exclude: [own2.id],
        });
        await expectEach([own1, c1], "to home but own2");
        await expectNothingBefore(home.api, everyone);
        await home.api.ungroup("home");
      },
    );

    await t.step("uids: bind, query, send, rebind, unbind", async () => {
      await api.bindUid(a1.id, "alice");
      await api.bindUid(b1.id, "alice");
      await api.bindUid(c1.id, "bob");
      assert.equal(await api.getUidByClientId(a1.id), "alice");
      assert.equal(await api.getUidByClientId(a2.id), undefined);
      assert.deepEqual(
        (await api.getClientIdsByUid("alice")).sort(),
        [a1.id, b1.id].sort(),
      );
      assert.equal(await api.isUidOnline("alice"), true);
      assert.equal(await api.isUidOnline("carol"), false);
      assert.deepEqual((await api.getAllUid()).sort(), ["alice", "bob"]);
      assert.equal(await api.getAllUidCount(), 2);

      await api.sendToUid("alice", "for alice");
      await expectEach([a1, b1], "for alice");
      await api.sendToUid(["alice", "bob"], "for both");
      await expectEach([a1, b1, c1], "for both");
      await expectNothingBefore(api, [a2, b2, c2]);

      await api.bindUid(b1.id, "bob"); // a client has one uid: replaces alice
      assert.deepEqual(await api.getClientIdsByUid("alice"), [a1.id]);
      assert.deepEqual(
        (await api.getClientIdsByUid("bob")).sort(),
        [b1.id, c1.id].sort(),
      );
      await api.unbindUid(a1.id);
      assert.equal(await api.isUidOnline("alice"), false);
      assert.equal(await api.getUidByClientId(a1.id), undefined);
      assert.deepEqual(await api.getAllUid(), ["bob"]);
      await api.sendToUid("alice", "nobody");
      await expectNothingBefore(api, [a1]);
    });

    await t.step(
      "groups: join, query, send once, exclude, leave, ungroup",
      async () => {
        await api.joinGroup(a1.id, "red");
        await api.joinGroup(b1.id, "red");
        await api.joinGroup(c1.id, "red");
        await api.joinGroup(c1.id, "blue");
        await api.joinGroup(c2.id, "blue");
        assert.equal(await api.getClientCountByGroup("red"), 3);
        assert.deepEqual(
          (await api.getClientIdsByGroup("blue")).sort(),
          [c1.id, c2.id].sort(),
        );
        // b1 and c1 are "bob"; a1 has no uid any more.
        assert.deepEqual(await api.getUidsByGroup("red"), ["bob"]);
        assert.equal(await api.getUidCountByGroup("red"), 1);
        assert.deepEqual((await api.getAllGroups()).sort(), ["blue", "red"]);

        await api.sendToGroup(["red", "blue"], "colors");
        await expectEach([a1, b1, c1, c2], "colors"); // c1 once, not twice
        await api.sendToGroup("red", bytes(1), { exclude: [b1.id] });
        await expectEach([a1, c1], bytes(1));
        await expectNothingBefore(api, clients);

        await api.leaveGroup(c2.id, "blue");
        assert.deepEqual(await api.getClientIdsByGroup("blue"), [c1.id]);
        await api.leaveGroup(c1.id, "blue");
        assert.deepEqual((await api.getAllGroups()).sort(), ["red"]);
        assert.equal(await api.getClientCountByGroup("blue"), 0);

        await api.ungroup("red");
        assert.equal(await api.getClientCountByGroup("red"), 0);
        assert.deepEqual(await api.getAllGroups(), []);
        await api.sendToGroup("red", "gone");
        await expectNothingBefore(api, [a1, b1, c1]);
      },
    );

    await t.step("info: set, update, get, bulk reads", async () => {
      assert.deepEqual(await api.getInfo(b2.id), {});
      await api.setInfo(b2.id, { name: "Bea", role: "admin" });
      await api.updateInfo(b2.id, { role: "user", city: "Oslo" });
      assert.deepEqual(await api.getInfo(b2.id), {
        name: "Bea",
        role: "user",
        city: "Oslo",
      });
      await api.setInfo(b2.id, { only: "this" });
      assert.deepEqual(await api.getInfo(b2.id), { only: "this" });
      await api.setInfo(a2.id, { n: "a2" });
      await api.joinGroup(a2.id, "infos");
      await api.joinGroup(b2.id, "infos");
      assert.deepEqual(await api.getClientInfosByGroup("infos"), {
        [a2.id]: { n: "a2" },
        [b2.id]: { only: "this" },
      });
      const all = await api.getAllClientInfos();
      assert.deepEqual(
        Object.keys(all).sort(),
        clients.map((c) => c.id).sort(),
      );
      assert.deepEqual(all[b2.id], { only: "this" });
    });

    await t.step(
      "a disconnected client leaves its uid and groups at once",
      async () => {
        await api.bindUid(c2.id, "dave");
        await api.joinGroup(c2.id, "leaving");
        await c2.close();
        await eventually(
          "c2 is offline",
          async () => !(await api.isOnline(c2.id)),
        );
        assert.equal(await api.isUidOnline("dave"), false);
        assert.equal(await api.getClientCountByGroup("leaving"), 0);
        assert.equal(await api.getInfo(c2.id), undefined);
        assert.equal(await api.getUidByClientId(c2.id), undefined);
        assert.equal(await api.getAllClientCount(), 5);
        // Calls about an offline client are no-ops.
        await api.sendToClient(c2.id, "late");
        await api.bindUid(c2.id, "dave");
        await api.joinGroup(c2.id, "leaving");
        await api.setInfo(c2.id, { x: "y" });
        assert.equal(await api.isUidOnline("dave"), false);
        assert.deepEqual(await api.getAllGroups(), ["infos"]);
      },
    );

    await t.step(
      "closeClient() sends the last message, then closes normally",
      async () => {
        await api.closeClient(b2.id, "bye");
        assert.equal(await b2.next(), "bye");
        const event = await b2.closed;
        assert.equal(event.code, 1000);
        await eventually(
          "b2 is offline",
          async () => !(await api.isOnline(b2.id)),
        );
      },
    );

    await t.step(
      "malformed clientIds are rejected with a typed error",
      async () => {
        for (const bad of ["", "nope", "zzzzzzzzzzzz.1", `${a1.id}x!`]) {
          await assert.rejects(
            api.sendToClient(bad, "x"),
            (error: unknown) =>
              error instanceof GatewayError &&
              error.code === "invalid_argument",
          );
          await assert.rejects(api.isOnline(bad), GatewayError);
        }
        await assert.rejects(
          api.bindUid(a1.id, ""),
          (error: unknown) =>
            error instanceof GatewayError && error.code === "invalid_argument",
        );
      },
    );
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(services.map((s) => s.child.stop()));
    await register.child.stop();
  }
});
