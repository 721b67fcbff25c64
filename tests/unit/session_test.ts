// Unit tests of a session's retained frames and of detached clients in the
// hub.

import assert from "node:assert/strict";
import type { Message } from "../../api.ts";
import { Session, type SessionSink } from "../../internal/session/session.ts";
import {
  decodeData,
  encodeData,
  parseClientFrame,
} from "../../internal/session/protocol.ts";
import {
  issueToken,
  tokenClientId,
  tokenMatches,
} from "../../internal/session/token.ts";
import { LocalHub } from "../../internal/hub/local_hub.ts";
import {
  encodeFrame,
  FrameEncoder,
  OPCODE,
} from "../../internal/websocket/frames.ts";

class Sink implements SessionSink {
  readonly frames: Message[] = [];
  sendData(seq: number, message: Message): void {
    this.frames.push(encodeData(seq, message));
  }
  close(): void {}
  supersede(): void {}
}

function session(maxBytes: number, overflows: string[] = []): Session {
  return new Session({
    clientId: "k2j4m6p8r0t2.1",
    token: "t",
    maxBytes,
    onOverflow: (s) => overflows.push(s.clientId),
    onClose: () => {},
  });
}

Deno.test("Session keeps what its client did not acknowledge", () => {
  const s = session(1000);
  const sink = new Sink();
  s.attach(sink, 0);
  for (let i = 1; i <= 5; i++) s.send(`m${i}`);
  assert.deepEqual(sink.frames, ["1:m1", "2:m2", "3:m3", "4:m4", "5:m5"]);
  assert.deepEqual(s.framesAfter(3), ["4:m4", "5:m5"]);
  s.ack(2);
  assert.equal(s.firstRetained, 3);
  assert.equal(s.framesAfter(1), undefined);
  assert.deepEqual(s.framesAfter(2), ["3:m3", "4:m4", "5:m5"]);
  assert.equal(s.framesAfter(6), undefined);
  s.detach();
  s.send(new Uint8Array([9]));
  const again = new Sink();
  s.attach(again, 4);
  assert.deepEqual(again.frames.map((f) => decodeData(f)?.seq), [5, 6]);
  assert.deepEqual(decodeData(again.frames[1]!)?.message, new Uint8Array([9]));
});

Deno.test("Session reports an overflow only while it has no connection", () => {
  const overflows: string[] = [];
  const s = session(3 * (8 + 10), overflows);
  s.attach(new Sink(), 0);
  for (let i = 0; i < 5; i++) s.send("x".repeat(10));
  assert.deepEqual(overflows, []);
  assert.equal(s.firstRetained, 3);
  s.detach();
  s.send("y".repeat(10));
  assert.deepEqual(overflows, [s.clientId]);
});

Deno.test("Session continues the seq and frames of a taken-over one", () => {
  const s = new Session({
    clientId: "k2j4m6p8r0t2.2",
    token: "t",
    maxBytes: 1000,
    seq: 12,
    retained: ["11:a", encodeData(12, new Uint8Array([1]))],
    onOverflow: () => {},
    onClose: () => {},
  });
  assert.equal(s.firstRetained, 11);
  const sink = new Sink();
  s.attach(sink, 10);
  s.send("b");
  assert.deepEqual(sink.frames.map((f) => decodeData(f)?.seq), [11, 12, 13]);
  assert.throws(
    () =>
      new Session({
        clientId: "k2j4m6p8r0t2.3",
        token: "t",
        maxBytes: 1000,
        seq: 3,
        retained: ["1:a"],
        onOverflow: () => {},
        onClose: () => {},
      }),
    TypeError,
  );
});

Deno.test("tokens name their clientId and match only themselves", () => {
  const token = issueToken("k2j4m6p8r0t2.1");
  assert.equal(tokenClientId(token), "k2j4m6p8r0t2.1");
  assert.equal(tokenMatches(token, token), true);
  assert.equal(tokenMatches(token, token.slice(0, -1) + "x"), false);
  assert.equal(tokenMatches(undefined, token), false);
  assert.equal(tokenClientId("no-dot"), undefined);
  assert.notEqual(issueToken("k2j4m6p8r0t2.1"), token);
});

Deno.test("parseClientFrame() tells data, control and invalid frames apart", () => {
  assert.deepEqual(parseClientFrame(":a:b"), { kind: "data", message: "a:b" });
  assert.deepEqual(parseClientFrame('{"type":"ack","seq":4}'), {
    kind: "ack",
    seq: 4,
  });
  assert.deepEqual(parseClientFrame('{"type":"hello"}'), {
    kind: "hello",
    token: undefined,
    seq: 0,
  });
  for (
    const bad of ["x", "{", '{"type":"ack"}', '{"type":"ack","seq":-1}', "[1]"]
  ) {
    assert.equal(parseClientFrame(bad).kind, "invalid", bad);
  }
});

Deno.test("LocalHub keeps a detached client apart: sent to, not counted", () => {
  const hub = new LocalHub();
  const got: Message[] = [];
  const socket = { send: (m: Message) => got.push(m), close() {} };
  hub.add("a.1", socket, { k: "v" });
  hub.bind("a.1", "u");
  hub.join("a.1", "g");
  assert.equal(hub.detach("a.1"), true);
  assert.equal(hub.has("a.1"), false);
  assert.equal(hub.size, 0);
  assert.equal(hub.hasUid("u"), false);
  assert.equal(hub.groupSize("g"), 0);
  assert.deepEqual([...hub.groups()], []);
  assert.equal(hub.infoOf("a.1"), undefined);
  assert.equal(hub.bind("a.1", "other"), false);
  hub.toClient("a.1", "c");
  hub.toUids(["u"], "u");
  hub.toGroups(["g", "h"], "g");
  hub.toAll("all");
  assert.deepEqual(got, ["c", "u", "g", "all"]);
  assert.deepEqual(hub.detachedState("a.1"), {
    uid: "u",
    groups: ["g"],
    info: { k: "v" },
  });
  assert.equal(hub.reattach("a.1"), true);
  assert.equal(hub.hasUid("u"), true);
  assert.equal(hub.groupSize("g"), 1);
  hub.detach("a.1");
  assert.equal(hub.remove("a.1"), true);
  hub.toUids(["u"], "late");
  assert.equal(got.length, 4);
  assert.equal(hub.detachedCount, 0);
});

Deno.test("FrameEncoder.numbered() writes the data frames of the protocol", () => {
  const frames = new FrameEncoder();
  for (const seq of [1, 9, 10, 127, 128, 300, 16384, 2 ** 35 + 3]) {
    for (const size of [0, 1, 117, 118, 125, 126, 65_520, 65_536, 70_000]) {
      for (const message of ["é".repeat(size >> 1), new Uint8Array(size)]) {
        const [head, payload] = frames.numbered(seq, message);
        const got = new Uint8Array(head.length + payload.length);
        got.set(head);
        got.set(payload, head.length);
        const data = encodeData(seq, message);
        const expected = typeof data === "string"
          ? encodeFrame(OPCODE.TEXT, new TextEncoder().encode(data))
          : encodeFrame(OPCODE.BINARY, data);
        assert.deepEqual(got, expected, `seq ${seq}, ${size} bytes`);
      }
    }
  }
});
