// LocalHub: the clients of one service and the two-way indexes of their
// uids and groups, without sockets.

import assert from "node:assert/strict";
import { GatewayError, type Message } from "../../mod.ts";
import { type ClientSocket, LocalHub } from "../../internal/hub/local_hub.ts";

/** A socket that records what it was sent and how it was closed. */
class RecordingSocket implements ClientSocket {
  readonly sent: Message[] = [];
  closed: [number, string] | undefined;
  send(message: Message): void {
    this.sent.push(message);
  }
  close(code: number, reason: string): void {
    this.closed = [code, reason];
  }
}

function hubWith(...ids: string[]) {
  const hub = new LocalHub();
  const sockets = new Map<string, RecordingSocket>();
  for (const id of ids) {
    const socket = new RecordingSocket();
    sockets.set(id, socket);
    hub.add(id, socket);
  }
  const sent = (id: string) => sockets.get(id)!.sent;
  return { hub, sockets, sent };
}

Deno.test("LocalHub.bind() keeps one uid per client and many clients per uid", () => {
  const { hub } = hubWith("a", "b", "c");
  assert.equal(hub.bind("a", "alice"), true);
  assert.equal(hub.bind("b", "alice"), true);
  assert.deepEqual([...hub.clientsOfUid("alice")].sort(), ["a", "b"]);
  // Binding again replaces the old uid, which vanishes when empty.
  hub.bind("a", "ann");
  hub.bind("b", "ann");
  assert.equal(hub.uidOf("a"), "ann");
  assert.equal(hub.hasUid("alice"), false);
  assert.deepEqual([...hub.uids()], ["ann"]);
  hub.unbind("a");
  assert.equal(hub.uidOf("a"), undefined);
  assert.deepEqual([...hub.clientsOfUid("ann")], ["b"]);
  assert.equal(hub.uidCount, 1);
  // An unknown client is offline: nothing changes.
  assert.equal(hub.bind("zz", "ann"), false);
  assert.deepEqual([...hub.clientsOfUid("ann")], ["b"]);
});

Deno.test("LocalHub.join() and leave() keep both directions, and empty groups vanish", () => {
  const { hub } = hubWith("a", "b");
  hub.join("a", "g1");
  hub.join("a", "g2");
  hub.join("b", "g1");
  hub.bind("a", "alice");
  hub.bind("b", "alice");
  assert.equal(hub.groupSize("g1"), 2);
  assert.deepEqual([...hub.uidsOfGroup("g1")], ["alice"]);
  hub.leave("a", "g2");
  assert.deepEqual([...hub.groups()].sort(), ["g1"]);
  assert.equal(hub.groupCount, 1);
  assert.equal(hub.join("zz", "g1"), false);
  assert.equal(hub.groupSize("g1"), 2);
});

Deno.test("LocalHub.disband() removes every member, and remove() cleans every index", () => {
  const { hub } = hubWith("a", "b");
  hub.join("a", "g");
  hub.join("b", "g");
  hub.join("b", "h");
  hub.disband("g");
  assert.equal(hub.groupSize("g"), 0);
  assert.deepEqual([...hub.groups()], ["h"]);
  hub.bind("b", "bob");
  assert.equal(hub.remove("b"), true);
  assert.equal(hub.remove("b"), false);
  assert.equal(hub.has("b"), false);
  assert.equal(hub.uidCount, 0);
  assert.equal(hub.groupCount, 0);
  assert.equal(hub.size, 1);
});

Deno.test("LocalHub info maps are copies, replaced or merged", () => {
  const hub = new LocalHub();
  hub.add("a", new RecordingSocket(), { plan: "free" });
  const info = hub.infoOf("a")!;
  info.plan = "changed by the caller";
  assert.deepEqual(hub.infoOf("a"), { plan: "free" });
  hub.mergeInfo("a", { region: "eu" });
  assert.deepEqual(hub.infoOf("a"), { plan: "free", region: "eu" });
  hub.replaceInfo("a", { plan: "pro" });
  assert.deepEqual(hub.infos(), { a: { plan: "pro" } });
  assert.deepEqual(hub.infos(["a", "gone"]), { a: { plan: "pro" } });
  assert.equal(hub.infoOf("gone"), undefined);
});

Deno.test("LocalHub info maps stay within their bounds, and a refusal changes nothing", async (t) => {
  const hub = new LocalHub({
    infoBounds: { maxInfoKeys: 3, maxInfoBytes: 20 },
  });
  hub.add("a", new RecordingSocket());
  const refused = (pattern: RegExp) => (error: unknown) => {
    assert.ok(error instanceof GatewayError);
    assert.equal(error.code, "invalid_argument");
    assert.match(error.message, pattern);
    return true;
  };

  await t.step("keys: a merge that adds one key too many", () => {
    hub.replaceInfo("a", { k1: "1", k2: "2", k3: "3" });
    assert.throws(
      () => hub.mergeInfo("a", { k4: "4" }),
      refused(
        /^Cannot update info: the info of client "a" would have 4 keys, more than the limit of 3 \(maxInfoKeys\); it has 3 now$/,
      ),
    );
    assert.deepEqual(hub.infoOf("a"), { k1: "1", k2: "2", k3: "3" });
    // Keys it already has do not count twice.
    hub.mergeInfo("a", { k1: "one", k3: "3" });
    assert.deepEqual(hub.infoOf("a"), { k1: "one", k2: "2", k3: "3" });
  });

  await t.step("bytes: UTF-8 of keys and values, kept as values change", () => {
    // 5 + 3 + 3 = 11 bytes now; "é" takes 2, so k2 would take 2 + 12.
    assert.throws(
      () => hub.mergeInfo("a", { k2: "éééééé" }),
      refused(
        /^Cannot update info: the info of client "a" would have 22 bytes of keys and values, more than the limit of 20 \(maxInfoBytes\); it has 11 now$/,
      ),
    );
    assert.deepEqual(hub.infoOf("a"), { k1: "one", k2: "2", k3: "3" });
    hub.mergeInfo("a", { k2: "ééééé" }); // 5 + 12 + 3: exactly 20
    assert.deepEqual(hub.infoOf("a"), { k1: "one", k2: "ééééé", k3: "3" });
    // Shrinking a value frees its bytes for another one.
    hub.mergeInfo("a", { k2: "" }); // 10
    hub.mergeInfo("a", { k1: "one", k3: "33333333333" }); // 20
    assert.deepEqual(hub.infoOf("a"), { k1: "one", k2: "", k3: "33333333333" });
    assert.throws(() => hub.mergeInfo("a", { k2: "2" }), refused(/21 bytes/));
  });

  await t.step("a replacement is measured alone", () => {
    assert.throws(
      () => hub.replaceInfo("a", { long: "x".repeat(17) }),
      refused(
        /^Cannot set info: the info of client "a" would have 21 bytes of keys and values, more than the limit of 20 \(maxInfoBytes\); it has 20 now$/,
      ),
    );
    assert.throws(
      () => hub.replaceInfo("a", { a: "", b: "", c: "", d: "" }),
      refused(/would have 4 keys, more than the limit of 3 \(maxInfoKeys\)/),
    );
    assert.deepEqual(hub.infoOf("a"), { k1: "one", k2: "", k3: "33333333333" });
    hub.replaceInfo("a", { long: "x".repeat(15) }); // 19
    hub.mergeInfo("a", { b: "" }); // 20
    assert.deepEqual(hub.infoOf("a"), { long: "x".repeat(15), b: "" });
    assert.throws(
      () => hub.mergeInfo("a", { c: "" }),
      refused(/21 bytes .*\(maxInfoBytes\)/),
    );
  });

  await t.step("a client that is not here is a no-op, bounds or not", () => {
    hub.mergeInfo("gone", { much: "x".repeat(100) });
    hub.replaceInfo("gone", { much: "x".repeat(100) });
    assert.equal(hub.infoOf("gone"), undefined);
  });
});

Deno.test("LocalHub sends reach each target once, minus exclusions", () => {
  const { hub, sent, sockets } = hubWith("a", "b", "c");
  hub.toAll("all", new Set(["b"]));
  hub.toClient("c", "just c");
  hub.toClient("gone", "nobody");
  hub.bind("a", "u1");
  hub.bind("b", "u2");
  hub.toUids(["u1", "u2", "u1"], "uids");
  hub.join("a", "g1");
  hub.join("a", "g2");
  hub.join("c", "g2");
  hub.toGroups(["g1", "g2"], "groups", new Set(["c"]));
  hub.toGroups(["g2"], "g2 only");
  assert.deepEqual(sent("a"), ["all", "uids", "groups", "g2 only"]);
  assert.deepEqual(sent("b"), ["uids"]);
  assert.deepEqual(sent("c"), ["all", "just c", "g2 only"]);
  hub.close("a", "bye");
  assert.deepEqual(sent("a").at(-1), "bye");
  assert.deepEqual(sockets.get("a")!.closed, [1000, ""]);
  hub.closeAll(1001, "going away");
  assert.deepEqual(sockets.get("b")!.closed, [1001, "going away"]);
});
