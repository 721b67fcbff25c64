// NewestConnections: which connection of a sender may deliver, and how
// much it remembers of senders without an open connection.

import assert from "node:assert/strict";
import {
  type LinkId,
  LinkIds,
  parseLinkId,
} from "../../internal/delivery/link_id.ts";
import {
  type Claimant,
  NewestConnections,
} from "../../internal/delivery/newest_connections.ts";

class Connection implements Claimant {
  superseded = 0;
  constructor(readonly link: LinkId) {}
  supersede(): void {
    this.superseded++;
  }
}

Deno.test("NewestConnections: a newer connection takes over, an older or the same one is refused", () => {
  const connections = new NewestConnections();
  const ids = new LinkIds();
  const [one, two, three] = [ids.next(), ids.next(), ids.next()];
  const first = new Connection(one);
  assert.deepEqual(connections.claim(first), {
    newest: true,
    previous: undefined,
  });
  const third = new Connection(three);
  const claim = connections.claim(third);
  assert.equal(claim.newest, true);
  assert.equal(claim.previous, first, "the caller supersedes the older one");
  assert.equal(connections.claim(new Connection(two)).newest, false);
  assert.equal(connections.claim(new Connection(three)).newest, false);
  // Its end leaves the sequence number: older ones stay refused.
  connections.release(third);
  assert.equal(connections.claim(new Connection(two)).newest, false);
  assert.equal(connections.claim(new Connection(ids.next())).newest, true);
  // Another sender is independent; the claims never supersede by themselves.
  assert.equal(
    connections.claim(new Connection(new LinkIds().next())).newest,
    true,
  );
  assert.equal(first.superseded + third.superseded, 0);
  assert.equal(connections.size, 2);
});

Deno.test("NewestConnections: at most 4096 senders without an open connection are remembered", () => {
  const connections = new NewestConnections();
  const open = new Connection(new LinkIds().next());
  connections.claim(open);
  const idle: Connection[] = [];
  for (let i = 0; i < 4100; i++) {
    const c = new Connection(new LinkIds().next());
    connections.claim(c);
    connections.release(c);
    idle.push(c);
  }
  assert.equal(connections.size, 1 + 4096);
  // The oldest idle ones are forgotten; the open one and the newest stay.
  assert.equal(connections.claim(new Connection(idle[0]!.link)).newest, true);
  assert.equal(
    connections.claim(new Connection(idle[4099]!.link)).newest,
    false,
  );
  assert.equal(connections.claim(new Connection(open.link)).newest, false);
});

Deno.test("link ids: formatted and parsed, malformed ones refused", () => {
  const ids = new LinkIds();
  const link = ids.next();
  assert.match(link.sender, /^[A-Za-z0-9_-]{16}$/);
  assert.equal(ids.next().seq, link.seq + 1);
  assert.notEqual(new LinkIds().sender, ids.sender);
  assert.deepEqual(parseLinkId(`${link.sender}.${link.seq}`), link);
  for (
    const bad of [
      "",
      "abc",
      "abc.",
      ".1",
      "abc.0",
      "abc.01",
      "a b.1",
      "a.1x",
      `${"a".repeat(65)}.1`,
    ]
  ) {
    assert.throws(() => parseLinkId(bad), /Malformed delivery link id/, bad);
  }
});
