// The member list a service derives from its registers' lists: the union of
// live registers, the last-known lists during an outage, and no shrinking
// while services re-join a register that restarted. Which service re-joins
// a restarted register first is up to their backoff, so this is checked
// here, deterministically, as well as end to end in register_faults_test.ts.

import assert from "node:assert/strict";
import { MemberTable } from "../internal/membership/member_table.ts";

const self = { nodeId: "aaaaaaaaaaaa", rpcAddress: "127.0.0.1:1001" };
const b = { nodeId: "bbbbbbbbbbbb", rpcAddress: "127.0.0.1:1002" };
const c = { nodeId: "cccccccccccc", rpcAddress: "127.0.0.1:1003" };
const d = { nodeId: "dddddddddddd", rpcAddress: "127.0.0.1:1004" };

function ids(table: MemberTable): string[] {
  return table.members().map((m) => m.nodeId).sort();
}

Deno.test("MemberTable uses the union of the live registers' lists", () => {
  const table = new MemberTable(self.nodeId, { settleMs: 50 });
  table.update("r1", [self, b]);
  table.update("r2", [self, c]);
  assert.deepEqual(ids(table), [self.nodeId, b.nodeId, c.nodeId]);
  assert.deepEqual([...table.peerAddresses()].sort(), [
    b.rpcAddress,
    c.rpcAddress,
  ]);
  // r1 is down: only r2's list counts while r2 is live.
  table.markDown("r1");
  assert.deepEqual(ids(table), [self.nodeId, c.nodeId]);
  table.close();
});

Deno.test("MemberTable keeps the last-known lists while no register is live", () => {
  const table = new MemberTable(self.nodeId, { settleMs: 50 });
  table.update("r1", [self, b]);
  table.update("r2", [self, b, c]);
  table.markDown("r1");
  table.markDown("r2");
  assert.deepEqual(ids(table), [self.nodeId, b.nodeId, c.nodeId]);
  table.close();
});

Deno.test("MemberTable does not shrink while services re-join a returned register", async () => {
  const table = new MemberTable(self.nodeId, { settleMs: 100 });
  let changes = 0;
  table.onChange(() => changes++);
  table.update("r1", [self, b, c]);
  table.markDown("r1");
  // The register restarted: it knows only this service so far, then d,
  // which started during the outage.
  table.update("r1", [self]);
  assert.deepEqual(ids(table), [self.nodeId, b.nodeId, c.nodeId]);
  table.update("r1", [self, d]);
  assert.deepEqual(ids(table), [self.nodeId, b.nodeId, c.nodeId, d.nodeId]);
  // b re-joins; c never does (it died during the outage).
  table.update("r1", [self, b, d]);
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.deepEqual(ids(table), [self.nodeId, b.nodeId, d.nodeId]);
  assert.ok(changes >= 3);
  table.close();
});

Deno.test("MemberTable drops a carried member whose address a new one took", () => {
  const table = new MemberTable(self.nodeId, { settleMs: 10_000 });
  table.update("r1", [self, b]);
  table.markDown("r1");
  const bRestarted = { nodeId: "eeeeeeeeeeee", rpcAddress: b.rpcAddress };
  table.update("r1", [self, bRestarted]);
  assert.deepEqual(ids(table), [self.nodeId, bRestarted.nodeId]);
  table.close();
});
