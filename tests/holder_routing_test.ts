// Holder-only routing (docs/holder_routing.md) with real processes: eight
// services, a client on one of them with a uid and a group, and sends and
// queries from the others that reach only that service, seen in each
// service's /metrics (wsgate_peer_deliveries_received_total,
// wsgate_peer_calls_received_total). Read-your-writes from services other
// than the client's; releases; a service that joins late; one restarted.
// Every Api call goes as a gRPC call with cluster scope to the service
// named, so that it runs there; the 4,000 sends run in the application of
// the second service (tests/fixtures/routing_app.ts).

import assert from "node:assert/strict";
import { GatewayService } from "../proto/gen/websocket/v1/gateway_pb.ts";
import { TestClient } from "./helpers/clients.ts";
import {
  Child,
  parseReadyLine,
  serviceArgs,
  type ServiceInfo,
  startRegisterProcess,
} from "./helpers/processes.ts";
import { type Scrape, scrape } from "./helpers/prometheus.ts";
import { callMethod, dial, type TestChannel } from "./helpers/rpc.ts";
import { eventually } from "./helpers/waits.ts";
import { startService } from "../mod.ts";
import {
  greeter,
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";

const SERVICES = 8;
const SENDS = 2000;
/** Sends in flight at a time from the test to one service. */
const IN_FLIGHT = 25;

/** One service process and a gRPC channel to it. */
interface Node extends AsyncDisposable {
  readonly child: Child;
  readonly info: ServiceInfo;
  readonly channel: TestChannel;
  metrics(): Promise<Scrape>;
}

async function startNode(register: string): Promise<Node> {
  const child = await Child.start(
    "service.ts",
    serviceArgs("tests/fixtures/routing_app.ts", register),
  );
  const info = parseReadyLine(child.first);
  const channel = dial(info.rpcAddress);
  return {
    child,
    info,
    channel,
    metrics: () => scrape(`http://127.0.0.1:${info.port}/metrics`),
    async [Symbol.asyncDispose]() {
      channel.close();
      await child.stop();
    },
  };
}

/** Calls an Api method on `node` (cluster scope): it runs there. */
async function call(
  node: Node,
  method: keyof typeof GatewayService.method,
  request: object,
): Promise<Record<string, unknown>> {
  const [answer] = await callMethod(
    node.channel.transport,
    GatewayService.method[method],
    [request],
  );
  return answer as Record<string, unknown>;
}

function text(value: string) {
  return { body: { case: "text" as const, value } };
}

/** Runs `n` calls of `one(i)`, IN_FLIGHT at a time. */
async function many(n: number, one: (i: number) => Promise<unknown>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < n) await one(next++);
    }),
  );
}

const RECEIVED = "wsgate_peer_deliveries_received_total";
const CALLS = "wsgate_peer_calls_received_total";

/** Each node's count of deliveries applied from peers. */
async function received(nodes: readonly Node[]): Promise<number[]> {
  return await Promise.all(
    nodes.map(async (n) => (await n.metrics()).value(RECEIVED)),
  );
}

/** Each node's count of peer calls of `method` answered. */
async function callsOf(
  nodes: readonly Node[],
  method: string,
): Promise<number[]> {
  return await Promise.all(
    nodes.map(async (n) => (await n.metrics()).value(CALLS, { method })),
  );
}

/** Waits until every node lists `n` members and knows every peer's holdings. */
async function untilSynced(nodes: readonly Node[], n: number) {
  await eventually(
    `${nodes.length} services know each other's holdings`,
    async () => {
      for (const node of nodes) {
        const m = await node.metrics();
        if (m.value("wsgate_members") !== n) return false;
        if (m.value("wsgate_holder_fallback_peers") !== 0) return false;
      }
      return true;
    },
    30_000,
  );
}

function minus(after: number[], before: number[]): number[] {
  return after.map((v, i) => v - before[i]!);
}

Deno.test("holder routing: uid and group traffic reaches only the services that hold them", async (t) => {
  await using stack = new AsyncDisposableStack();
  const register = await startRegisterProcess();
  stack.use(register.child);
  const started = await Promise.all(
    Array.from({ length: SERVICES }, () => startNode(register.address)),
  );
  for (const node of started) stack.use(node);
  const nodes = [...started];
  await untilSynced(nodes, SERVICES);
  const [holder, sender, c, d] = nodes as [Node, Node, Node, Node];
  const others = nodes.slice(2);

  await using client = await TestClient.connect(holder.info.port);

  await t.step(
    "bindUid and joinGroup from other services are seen at once from others still",
    async () => {
      await call(sender, "bindUid", { clientId: client.id, uid: "alice" });
      assert.equal(
        (await call(c, "isUidOnline", { uid: "alice" })).online,
        true,
      );
      assert.deepEqual(
        (await call(d, "getClientIdsByUid", { uid: "alice" })).clientIds,
        [client.id],
      );
      await call(c, "sendToUid", { uids: ["alice"], payload: text("ryw-uid") });
      assert.equal(await client.next(), "ryw-uid");

      await call(c, "joinGroup", { clientId: client.id, group: "room" });
      assert.equal(
        (await call(d, "getClientCountByGroup", { group: "room" })).count,
        1n,
      );
      await call(sender, "sendToGroup", {
        groups: ["room"],
        payload: text("ryw-group"),
      });
      assert.equal(await client.next(), "ryw-group");
    },
  );

  await t.step(
    `${SENDS} sendToUid and ${SENDS} sendToGroup from a second service reach only the holder`,
    async () => {
      const before = await received(nodes);
      // The sends run on the second service, from its application.
      await using control = await TestClient.connect(sender.info.port);
      control.socket.send(`!send uid alice ${SENDS}`);
      assert.equal(await control.next(30_000), "sent");
      control.socket.send(`!send group room ${SENDS}`);
      assert.equal(await control.next(30_000), "sent");
      const got = await client.take(2 * SENDS);
      assert.equal(got.filter((m) => String(m).startsWith("u")).length, SENDS);
      assert.equal(got.filter((m) => String(m).startsWith("g")).length, SENDS);
      const delta = minus(await received(nodes), before);
      assert.equal(delta[0], 2 * SENDS, `the holder applied ${delta[0]}`);
      for (const [i, n] of delta.entries()) {
        if (i < 2) continue;
        assert.ok(n < 50, `service ${i}, which holds nothing, applied ${n}`);
      }
    },
  );

  await t.step(
    "isUidOnline asks only the holder, and nobody for a uid nobody holds",
    async () => {
      const before = await callsOf(nodes, "isUidOnline");
      assert.equal(
        (await call(sender, "isUidOnline", { uid: "alice" })).online,
        true,
      );
      assert.equal(
        (await call(sender, "isUidOnline", { uid: "nobody" })).online,
        false,
      );
      assert.equal(
        (await call(sender, "getClientCountByGroup", { group: "empty" })).count,
        0n,
      );
      const delta = minus(await callsOf(nodes, "isUidOnline"), before);
      assert.deepEqual(delta, [1, 0, 0, 0, 0, 0, 0, 0]);
    },
  );

  await t.step(
    "unbind, leave and disconnect: the names stop being routed there",
    async () => {
      await call(d, "unbindUid", { clientId: client.id });
      await call(c, "leaveGroup", { clientId: client.id, group: "room" });
      await using leaver = await TestClient.connect(holder.info.port);
      await call(d, "joinGroup", { clientId: leaver.id, group: "brief" });
      await leaver.close();
      await eventually(
        "no service routes alice, room or brief to the holder",
        async () => {
          const before = await received(nodes);
          await call(sender, "sendToUid", {
            uids: ["alice"],
            payload: text("x"),
          });
          await call(sender, "sendToGroup", {
            groups: ["room", "brief"],
            payload: text("x"),
          });
          const delta = minus(await received(nodes), before);
          return delta.every((n) => n === 0);
        },
      );
      assert.equal(
        (await call(c, "isUidOnline", { uid: "alice" })).online,
        false,
      );
    },
  );

  await t.step(
    "a service that joins late gets the snapshots and routes by them",
    async () => {
      await call(sender, "bindUid", { clientId: client.id, uid: "bob" });
      const late = stack.use(await startNode(register.address));
      nodes.push(late);
      await untilSynced(nodes, SERVICES + 1);
      const before = await received(nodes);
      await many(
        200,
        (i) =>
          call(late, "sendToUid", { uids: ["bob"], payload: text(`late${i}`) }),
      );
      assert.equal((await client.take(200)).length, 200);
      const delta = minus(await received(nodes), before);
      assert.equal(delta[0], 200);
      assert.ok(
        delta.slice(1, -1).every((n) => n === 0),
        `non-holders applied ${delta}`,
      );
      assert.equal(
        (await call(late, "isUidOnline", { uid: "bob" })).online,
        true,
      );
    },
  );

  await t.step("a restarted service is synced again, both ways", async () => {
    const old = others[0]!;
    await old.child.stop("SIGKILL");
    const restarted = stack.use(await startNode(register.address));
    nodes.splice(nodes.indexOf(old), 1, restarted);
    await untilSynced(nodes, SERVICES + 1);
    const before = await received(nodes);
    await call(restarted, "sendToUid", {
      uids: ["bob"],
      payload: text("again"),
    });
    assert.equal(await client.next(), "again");
    await using fresh = await TestClient.connect(restarted.info.port);
    await call(holder, "joinGroup", { clientId: fresh.id, group: "fresh" });
    await call(sender, "sendToGroup", {
      groups: ["fresh"],
      payload: text("hi"),
    });
    assert.equal(await fresh.next(), "hi");
    const delta = minus(await received(nodes), before);
    const restartedAt = nodes.indexOf(restarted);
    delta.forEach((n, i) => {
      const expected = i === 0 || i === restartedAt ? 1 : 0;
      assert.equal(n, expected, `service ${i} applied ${n}`);
    });
  });
  await t.step(
    "a frozen service, whose links broke on the deadline, is synced again when it thaws",
    async () => {
      const frozen = nodes[3]!;
      await using member = await TestClient.connect(frozen.info.port);
      await call(sender, "joinGroup", { clientId: member.id, group: "thaw" });
      frozen.child.signal("SIGSTOP");
      try {
        // Deliveries to it wait past the peer deadline (2 s): links break.
        await Promise.allSettled([
          call(sender, "sendToGroup", {
            groups: ["thaw"],
            payload: text("lost"),
          }),
          call(holder, "sendToGroup", {
            groups: ["thaw"],
            payload: text("lost"),
          }),
        ]);
        await new Promise((resolve) => setTimeout(resolve, 3000));
      } finally {
        frozen.child.signal("SIGCONT");
      }
      await untilSynced(nodes, SERVICES + 1);
      await eventually(
        "sends reach the thawed service's member again",
        async () => {
          await call(sender, "sendToGroup", {
            groups: ["thaw"],
            payload: text("back"),
          });
          while (member.pending.length > 0) {
            if (await member.next() === "back") return true;
          }
          return false;
        },
      );
      const before = await received(nodes);
      await call(frozen, "sendToUid", {
        uids: ["bob"],
        payload: text("from-thawed"),
      });
      assert.equal(await client.next(), "from-thawed");
      const delta = minus(await received(nodes), before);
      delta.forEach((n, i) =>
        assert.equal(n, i === 0 ? 1 : 0, `service ${i} applied ${n}`)
      );
    },
  );
});

Deno.test("holder routing: a service without it (as an older version) is asked about everything and asks everyone", async () => {
  await using register = await startLocalRegister();
  const start = (holderRouting: boolean) =>
    startService(
      greeter,
      localServiceOptions(register.address, { holderRouting }),
    );
  await using a = await start(true);
  await using b = await start(true);
  await using old = await start(false);
  const metricsOf = (port: number) =>
    scrape(`http://127.0.0.1:${port}/metrics`);
  await eventually(
    "a knows b's holdings and counts the old one as holder of all",
    async () => {
      const m = await metricsOf(a.port);
      return m.value("wsgate_members") === 3 &&
        m.value("wsgate_holder_fallback_peers") === 1;
    },
  );
  await using onOld = await TestClient.connect(old.port);
  await using onB = await TestClient.connect(b.port);
  await old.api.bindUid(onOld.id, "old-uid");
  await a.api.joinGroup(onB.id, "new-group");
  await a.api.bindUid(onB.id, "new-uid");
  // The old service's holdings are not known: it is asked.
  assert.equal(await a.api.isUidOnline("old-uid"), true);
  await a.api.sendToUid("old-uid", "to-old");
  assert.equal(await onOld.next(), "to-old");
  // It asks everyone, as before.
  assert.equal(await old.api.isUidOnline("new-uid"), true);
  await old.api.sendToGroup("new-group", "from-old");
  assert.equal(await onB.next(), "from-old");
  // Its links carried no announcement it cannot read: they still work.
  await a.api.sendToAll("all");
  assert.equal(await onOld.next(), "all");
  assert.equal(await onB.next(), "all");
  const oldMetrics = await metricsOf(old.port);
  assert.throws(() => oldMetrics.value("wsgate_holder_fallback_peers"));
});
