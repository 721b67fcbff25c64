// Unit tests of the holder index (internal/cluster/holder_index.ts) and of
// the holder announcements on the delivery wire that feed it.

import assert from "node:assert/strict";
import {
  HolderIndex,
  type HolderIndexOptions,
} from "../../internal/cluster/holder_index.ts";
import { applyBatch, DeliveryEncoder } from "../../internal/delivery/codec.ts";
import { HOLDING } from "../../internal/delivery/wire.ts";
import { LocalHub } from "../../internal/hub/local_hub.ts";

const MEMBERS = [
  { nodeId: "self", rpcAddress: "h:0" },
  { nodeId: "b", rpcAddress: "h:2" },
  { nodeId: "c", rpcAddress: "h:3" },
];

/** An index whose peers b and c sent complete snapshots of `holds`. */
function syncedIndex(
  holds: Record<string, { uids?: string[]; groups?: string[] }> = {},
  options: HolderIndexOptions = {},
) {
  const index = new HolderIndex("self", options);
  index.retain(MEMBERS);
  const streams = new Map<string, ReturnType<HolderIndex["openStream"]>>();
  for (const nodeId of ["b", "c"]) {
    const stream = index.openStream();
    stream.reset(nodeId, 1);
    stream.hold(HOLDING.UID, holds[nodeId]?.uids ?? []);
    stream.hold(HOLDING.GROUP, holds[nodeId]?.groups ?? []);
    stream.synced();
    streams.set(nodeId, stream);
  }
  return { index, streams };
}

Deno.test("HolderIndex.peersFor() counts peers without a snapshot as holders of everything", () => {
  const index = new HolderIndex("self");
  index.retain(MEMBERS);
  assert.deepEqual([...index.peersFor("uid", ["alice"])].sort(), [
    "h:2",
    "h:3",
  ]);
  const stream = index.openStream();
  stream.reset("b", 1);
  stream.hold(HOLDING.UID, ["alice"]);
  // Not complete yet: b still gets everything.
  assert.deepEqual([...index.peersFor("uid", ["bob"])].sort(), ["h:2", "h:3"]);
  stream.synced();
  assert.deepEqual(index.peersFor("uid", ["bob"]), ["h:3"]);
  assert.deepEqual([...index.peersFor("uid", ["alice"])].sort(), [
    "h:2",
    "h:3",
  ]);
  assert.equal(index.fallbackPeers, 1);
});

Deno.test("HolderIndex.peersFor() reaches only holders once every peer is synced", async (t) => {
  const { index, streams } = syncedIndex({
    b: { uids: ["alice"], groups: ["room", "both"] },
    c: { uids: ["carol"], groups: ["both"] },
  });
  assert.equal(index.fallbackPeers, 0);
  await t.step("nobody holds it: no peer", () => {
    assert.deepEqual(index.peersFor("uid", ["nobody"]), []);
    assert.deepEqual(index.peersFor("group", ["alice"]), []);
  });
  await t.step("one holder, several, and lists of names", () => {
    assert.deepEqual(index.peersFor("uid", ["alice"]), ["h:2"]);
    assert.deepEqual(index.peersFor("group", ["room"]), ["h:2"]);
    assert.deepEqual([...index.peersFor("group", ["both"])].sort(), [
      "h:2",
      "h:3",
    ]);
    assert.deepEqual(
      [...index.peersFor("uid", ["alice", "carol", "x"])].sort(),
      ["h:2", "h:3"],
    );
    assert.deepEqual(index.holdersOf("group", "both").sort(), ["b", "c"]);
  });
  await t.step("a release removes one holder; a Set shrinks back", () => {
    streams.get("b")!.release(HOLDING.GROUP, ["both"]);
    assert.deepEqual(index.peersFor("group", ["both"]), ["h:3"]);
    assert.deepEqual(index.holdersOf("group", "both"), ["c"]);
    streams.get("c")!.release(HOLDING.GROUP, ["both"]);
    assert.deepEqual(index.peersFor("group", ["both"]), []);
    assert.equal(index.size, 3);
  });
});

Deno.test("HolderIndex: a connection that ends makes its sender a holder of everything until it resets", () => {
  const { index, streams } = syncedIndex({ b: { uids: ["alice"] } });
  streams.get("b")!.end();
  assert.deepEqual(index.holdersOf("uid", "alice"), []);
  assert.deepEqual(index.peersFor("uid", ["zed"]), ["h:2"]);
  assert.equal(index.isSynced("b"), false);
  const again = index.openStream();
  again.reset("b", 2);
  again.hold(HOLDING.UID, ["bob"]);
  again.synced();
  assert.deepEqual(index.peersFor("uid", ["zed"]), []);
  assert.deepEqual(index.peersFor("uid", ["bob"]), ["h:2"]);
});

Deno.test("HolderIndex ignores an older connection of a sender that reset on a newer one", () => {
  const { index, streams } = syncedIndex({ b: { uids: ["alice"] } });
  const newer = index.openStream();
  newer.reset("b", 2);
  newer.hold(HOLDING.UID, ["bob"]);
  newer.synced();
  const older = streams.get("b")!;
  older.release(HOLDING.UID, ["bob"]);
  older.hold(HOLDING.UID, ["stale"]);
  older.end();
  assert.equal(index.isSynced("b"), true);
  assert.deepEqual(index.peersFor("uid", ["bob"]), ["h:2"]);
  assert.deepEqual(index.peersFor("uid", ["stale"]), []);
  assert.deepEqual(index.peersFor("uid", ["alice"]), []);
  // A reset with an epoch already seen is stale too.
  const replay = index.openStream();
  replay.reset("b", 1);
  replay.hold(HOLDING.UID, ["replayed"]);
  assert.deepEqual(index.holdersOf("uid", "replayed"), []);
});

Deno.test("HolderIndex.retain() keeps a departed peer's holdings for a while, unrouted", () => {
  const index = new HolderIndex("self");
  index.retain(MEMBERS);
  const stream = index.openStream();
  stream.reset("b", 1);
  stream.hold(HOLDING.UID, ["alice"]);
  stream.synced();
  index.retain(MEMBERS.filter((m) => m.nodeId !== "b"));
  assert.deepEqual(index.peersFor("uid", ["alice"]), ["h:3"]);
  // Back within the grace period, on the same connection: still synced.
  index.retain(MEMBERS);
  assert.equal(index.isSynced("b"), true);
  assert.deepEqual([...index.peersFor("uid", ["alice"])].sort(), [
    "h:2",
    "h:3",
  ]);
});

Deno.test("HolderIndex.retain() drops a peer that left, and keeps one synced before it was listed", () => {
  const { index } = syncedIndex({
    b: { uids: ["alice"] },
    c: { uids: ["alice"] },
  }, { departedGraceMs: 0 });
  index.retain(MEMBERS.filter((m) => m.nodeId !== "b"));
  assert.deepEqual(index.holdersOf("uid", "alice"), ["c"]);
  assert.equal(index.isSynced("b"), false);
  const early = index.openStream();
  early.reset("d", 1);
  early.hold(HOLDING.GROUP, ["room"]);
  early.synced();
  index.retain(MEMBERS.filter((m) => m.nodeId !== "b"));
  index.retain([...MEMBERS, { nodeId: "d", rpcAddress: "h:4" }]);
  assert.deepEqual(index.peersFor("group", ["room"]).includes("h:4"), true);
  // b came back without a snapshot: it counts as holder of everything.
  assert.deepEqual(index.peersFor("group", ["other"]), ["h:2"]);
});

Deno.test("HolderIndex never lists this service itself", () => {
  const index = new HolderIndex("self");
  index.retain(MEMBERS);
  const stream = index.openStream();
  stream.reset("self", 1);
  stream.hold(HOLDING.UID, ["alice"]);
  stream.synced();
  assert.deepEqual(index.holdersOf("uid", "alice"), []);
});

Deno.test("applyBatch() feeds holder announcements to the stream and counts only message deliveries", () => {
  const index = new HolderIndex("self");
  index.retain(MEMBERS);
  const encoder = new DeliveryEncoder();
  const parts = [
    encoder.holdReset("b", 7).slice(),
    encoder.hold(HOLDING.UID, ["alice", "ünïcode"]).slice(),
    encoder.hold(HOLDING.GROUP, ["room"]).slice(),
    encoder.toUids(["alice"], "hi").slice(),
    encoder.release(HOLDING.UID, ["alice"]).slice(),
    encoder.holdSynced().slice(),
  ];
  const batch = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    batch.set(part, at);
    at += part.length;
  }
  const applied = applyBatch(new LocalHub(), batch, index.openStream());
  assert.equal(applied, 1);
  assert.equal(index.isSynced("b"), true);
  assert.deepEqual(index.holdersOf("uid", "ünïcode"), ["b"]);
  assert.deepEqual(index.holdersOf("uid", "alice"), []);
  // c sent no snapshot: it is asked too.
  assert.deepEqual([...index.peersFor("group", ["room"])].sort(), [
    "h:2",
    "h:3",
  ]);
  // Without a stream, announcements are skipped and the rest applies.
  assert.equal(applyBatch(new LocalHub(), batch), 1);
  // A holding byte that is neither uids nor groups is malformed.
  const bad = encoder.hold(HOLDING.UID, ["x"]).slice();
  bad[1] = 9;
  assert.throws(() => applyBatch(new LocalHub(), bad), /holding 9 is unknown/);
});

Deno.test("LocalHub tells its observer of the first member of a uid or group and of the last", () => {
  const events: string[] = [];
  const hub = new LocalHub({
    holdings: {
      held: (kind, name) => events.push(`+${kind}:${name}`),
      released: (kind, name) => events.push(`-${kind}:${name}`),
    },
  });
  const socket = { send() {}, close() {} };
  hub.add("a", socket);
  hub.add("b", socket);
  hub.bind("a", "u");
  hub.bind("b", "u");
  hub.join("a", "g");
  hub.join("b", "g");
  hub.join("a", "g");
  assert.deepEqual(events.splice(0), ["+uid:u", "+group:g"]);
  hub.bind("a", "v");
  hub.unbind("b");
  hub.leave("a", "g");
  assert.deepEqual(events.splice(0), ["+uid:v", "-uid:u"]);
  hub.join("a", "h");
  hub.remove("b");
  hub.disband("h");
  hub.remove("a");
  assert.deepEqual(events.splice(0), [
    "+group:h",
    "-group:g",
    "-group:h",
    "-uid:v",
  ]);
});
