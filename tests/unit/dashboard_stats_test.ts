// DashboardStats, the register's memory of its members' reports, in
// isolation: bounds, latency from histogram buckets, the registers that
// services report, and members that leave.

import assert from "node:assert/strict";
import { DashboardStats } from "../../internal/dashboard/dashboard_stats.ts";
import { SampleRing } from "../../internal/dashboard/sample_ring.ts";
import { latencyView, quantileMs } from "../../internal/dashboard/latency.ts";
import type { MemberStats } from "../../internal/membership/member_stats.ts";
import { createNodeId } from "../../internal/hub/client_id.ts";

const BOUNDS = [0.001, 0.01, 0.1];

function report(
  nodeId: string,
  fields: Partial<MemberStats> = {},
): MemberStats {
  return {
    nodeId,
    name: "",
    websocketAddress: "",
    uptimeMs: 1000,
    state: "ready",
    clients: 0,
    uids: 0,
    groups: 0,
    messagesIn: 0,
    messagesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    connectionsOpened: 0,
    slowConsumerCloses: 0,
    rateLimitCloses: 0,
    tooBigCloses: 0,
    protocolErrorCloses: 0,
    peerDelivery: { bounds: BOUNDS, counts: [0, 0, 0, 0], sumSeconds: 0 },
    registers: [],
    rssBytes: 0,
    ...fields,
  };
}

function self(members: string[], registerId = createNodeId()) {
  return {
    registerId,
    address: "127.0.0.1:8101",
    uptimeMs: 5000,
    members: members.map((nodeId, i) => ({
      nodeId,
      rpcAddress: `127.0.0.1:${9000 + i}`,
    })),
    memberListVersion: 1,
  };
}

Deno.test("SampleRing keeps the newest values, oldest first", () => {
  const ring = new SampleRing<number>(3);
  assert.deepEqual(ring.toArray(), []);
  for (let i = 1; i <= 7; i++) ring.push(i);
  assert.deepEqual(ring.toArray(), [5, 6, 7]);
  assert.equal(ring.at(-1), 7);
  assert.equal(ring.at(0), 5);
  assert.equal(ring.at(3), undefined);
  assert.throws(() => new SampleRing(0), RangeError);
});

Deno.test("quantileMs() interpolates within the bucket, as histogram_quantile", () => {
  // Ten observations between 1 and 10 ms.
  assert.equal(quantileMs(BOUNDS, [0, 10, 0, 0], 0.5), 5.5);
  assert.equal(quantileMs(BOUNDS, [0, 10, 0, 0], 0.99), 9.91);
  // Past the last bound, the last bound.
  assert.equal(quantileMs(BOUNDS, [0, 0, 0, 4], 0.99), 100);
  assert.equal(quantileMs(BOUNDS, [0, 0, 0, 0], 0.5), null);
  const merged = latencyView([
    { bounds: BOUNDS, counts: [10, 0, 0, 0], sumSeconds: 0.005 },
    { bounds: BOUNDS, counts: [0, 0, 10, 0], sumSeconds: 0.5 },
  ]);
  assert.equal(merged.count, 20);
  assert.equal(merged.avgMs, 25.25);
  assert.ok(merged.p99Ms! > 10 && merged.p99Ms! <= 100);
  assert.ok(merged.p50Ms! <= 1);
});

Deno.test("DashboardStats is bounded: members kept, services listed, history", () => {
  const stats = new DashboardStats({
    intervalMs: 100,
    maxTracked: 2,
    maxShown: 2,
    historyMs: 1000,
  });
  const ids = [createNodeId(), createNodeId(), createNodeId()];
  assert.equal(stats.record(report(ids[0]!, { name: "a", clients: 1 })), true);
  assert.equal(stats.record(report(ids[1]!, { name: "b", clients: 2 })), true);
  assert.equal(stats.record(report(ids[2]!, { name: "c", clients: 4 })), false);
  assert.equal(stats.tracked, 2);
  // A member already kept still updates.
  assert.equal(stats.record(report(ids[0]!, { name: "a", clients: 3 })), true);
  for (let i = 0; i < 50; i++) stats.sample();
  const state = stats.state(self(ids));
  assert.equal(state.history.length, 10);
  assert.equal(state.services.length, 2);
  assert.equal(state.omittedServices, 1);
  assert.equal(state.totals.services, 3);
  assert.equal(state.totals.clients, 5);
  // The one past maxTracked counts, without stats, named by its node id;
  // the first two by name are listed.
  assert.deepEqual(
    state.services.map((s) => s.name),
    ["a", "b", ids[2]!].sort().slice(0, 2),
  );
  assert.equal(
    state.services.find((s) => s.nodeId === ids[2])?.state ?? "no-stats",
    "no-stats",
  );
  stats.forget(ids[0]!);
  assert.equal(stats.tracked, 1);
  assert.equal(stats.record(report(ids[2]!)), true);
});

Deno.test("DashboardStats derives rates and latency from consecutive reports", async () => {
  const stats = new DashboardStats({ intervalMs: 100 });
  const id = createNodeId();
  stats.record(report(id, { name: "s" }));
  await new Promise((resolve) => setTimeout(resolve, 50));
  stats.record(report(id, {
    name: "s",
    messagesIn: 100,
    messagesOut: 300,
    peerDelivery: { bounds: BOUNDS, counts: [0, 10, 0, 0], sumSeconds: 0.05 },
  }));
  stats.sample();
  const state = stats.state(self([id]));
  const view = state.services[0]!;
  assert.ok(view.messagesInPerSec > 0);
  assert.ok(view.messagesOutPerSec > view.messagesInPerSec);
  assert.equal(view.history.messagesInPerSec.length, 1);
  assert.equal(view.peerDelivery.count, 10);
  assert.equal(view.peerDelivery.avgMs, 5);
  assert.equal(view.peerDelivery.p50Ms, 5.5);
  const point = state.history.at(-1)!;
  assert.equal(point.peerDeliveryAvgMs, 5);
  assert.ok(point.messagesInPerSec > 0);
});

Deno.test("DashboardStats lists the registers that services report", () => {
  const stats = new DashboardStats({ intervalMs: 100 });
  const registerId = createNodeId();
  const otherId = createNodeId();
  const [a, b] = [createNodeId(), createNodeId()];
  const links = (otherUp: boolean) => [
    {
      address: "10.0.0.1:8101",
      registerId,
      connected: true,
      connectedMs: 1000,
    },
    {
      address: "10.0.0.2:8101",
      registerId: otherId,
      connected: otherUp,
      connectedMs: otherUp ? 700 : 0,
    },
  ];
  stats.record(report(a, { registers: links(true) }));
  stats.record(report(b, { registers: links(false) }));
  const state = stats.state(self([a, b], registerId));
  assert.deepEqual(
    state.registers.map((
      r,
    ) => [r.address, r.self, r.state, r.connectedServices]),
    [
      ["10.0.0.1:8101", true, "up", 2],
      ["10.0.0.2:8101", false, "partial", 1],
    ],
  );
  assert.equal(state.registers[0]!.uptimeMs, 5000);
  assert.ok(state.registers[1]!.uptimeMs! >= 700);
});
