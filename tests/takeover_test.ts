// Session takeover (docs/recovery.md): a `wsgate.v1` client that comes
// back to another service than the one holding its session gets it there
// with nothing lost or doubled while senders keep sending to its clientId,
// uid and group; a service that stops hands its sessions over (a rolling
// deploy); a service that is killed loses them (`recovered: false`).
// Services run as processes of tests/fixtures/takeover_app.ts.

import assert from "node:assert/strict";
import { startCaller, startLocalRegister } from "./helpers/local_cluster.ts";
import {
  Child,
  parseReadyLine,
  serviceArgs,
  type ServiceInfo,
} from "./helpers/processes.ts";
import { TestClient } from "./helpers/clients.ts";
import { textOf, V1Socket } from "./helpers/v1_socket.ts";
import { startCutProxy } from "./helpers/cut_proxy.ts";
import { eventually } from "./helpers/waits.ts";

const APP = "tests/fixtures/takeover_app.ts";
/** Rounds of three messages (clientId, uid, group) each sender sends. */
const ROUNDS = 250;
/** Pause between rounds: a burst of about 1 to 2 s per sender. */
const PAUSE_MS = 4;

interface TestService extends AsyncDisposable {
  readonly child: Child;
  readonly info: ServiceInfo;
}

async function startTakeoverService(register: string): Promise<TestService> {
  const child = await Child.start(
    "service.ts",
    serviceArgs(
      APP,
      register,
      Deno.env.get("TAKEOVER_DEBUG") ? ["--log-level", "debug"] : [],
    ),
  );
  const info = parseReadyLine(child.first);
  return {
    child,
    info,
    [Symbol.asyncDispose]: () => child[Symbol.asyncDispose](),
  };
}

/** Waits until every service sees `n` members. */
async function untilMembers(services: TestService[], n: number) {
  for (const { info } of services) {
    await eventually(`service ${info.name} sees ${n} members`, async () => {
      const health = await fetch(`http://127.0.0.1:${info.port}/healthz`);
      return (await health.json()).members === n;
    });
  }
}

/** A plain client that makes its service send rounds to a session. */
class Sender implements AsyncDisposable {
  readonly client: TestClient;
  readonly done: Promise<string>;

  private constructor(client: TestClient, command: string) {
    this.client = client;
    client.socket.send(command);
    this.done = client.next(30_000).then(String);
    // Awaited by the test; closed early only when the test failed already.
    this.done.catch(() => {});
  }

  static async start(
    port: number,
    tag: string,
    target: { clientId: string; uid: string; group: string },
  ): Promise<Sender> {
    const client = new TestClient(`ws://127.0.0.1:${port}/`);
    await new Promise((resolve) => client.socket.onopen = resolve);
    return new Sender(
      client,
      `!send ${tag} ${target.clientId} ${target.uid} ${target.group} ${ROUNDS} ${PAUSE_MS}`,
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.client.close();
  }
}

/**
 * Checks that what `sockets` received (in order, across the connections of
 * one session) holds every message of each sender of `tags` exactly once,
 * in the order sent.
 */
function assertExactlyOnce(
  sockets: V1Socket[],
  tags: readonly string[],
  what: string,
): void {
  for (const socket of sockets) assert.deepEqual(socket.errors, [], what);
  const byTag = new Map<string, number[]>(tags.map((tag) => [tag, []]));
  for (const socket of sockets) {
    for (const message of socket.received) {
      const text = textOf(message);
      const colon = text.indexOf(":");
      const numbers = byTag.get(text.slice(0, colon));
      if (numbers !== undefined) numbers.push(Number(text.slice(colon + 1)));
    }
  }
  const expected = Array.from({ length: 3 * ROUNDS }, (_, i) => i + 1);
  for (const [tag, numbers] of byTag) {
    assert.equal(numbers.length, expected.length, `${what}: count of ${tag}`);
    assert.deepEqual(numbers, expected, `${what}: ${tag} once each, in order`);
  }
}

/** How many messages of `tags` the sockets received. */
function countOf(sockets: V1Socket[], tags: readonly string[]): number {
  let n = 0;
  for (const socket of sockets) {
    for (const message of socket.received) {
      const text = textOf(message);
      if (tags.includes(text.slice(0, text.indexOf(":")))) n++;
    }
  }
  return n;
}

Deno.test("sessions move between services without losing or doubling a message", async (t) => {
  await using register = await startLocalRegister();
  await using s1 = await startTakeoverService(register.address);
  await using s2 = await startTakeoverService(register.address);
  await using s3 = await startTakeoverService(register.address);
  await using caller = await startCaller(register.address);
  await untilMembers([s1, s2, s3], 4);
  const { api } = caller;

  await t.step(
    "a cut client resumes on another service while two senders keep sending",
    async () => {
      await using proxy = await startCutProxy({
        target: `127.0.0.1:${s1.info.port}`,
      });
      const first = await V1Socket.open(
        `ws://${proxy.address}/?uid=u1&group=g1`,
      );
      await first.until("ready", () => first.received.includes("ready"));
      const oldId = first.welcome.clientId;
      assert.ok(oldId.startsWith(`${s1.info.nodeId}.`));
      const target = { clientId: oldId, uid: "u1", group: "g1" };
      const tags = ["far", "near"];
      // One sender on a third service, one on the service that holds it.
      await using far = await Sender.start(s3.info.port, "far", target);
      await using near = await Sender.start(s1.info.port, "near", target);
      await first.until(
        "the burst is under way",
        () => countOf([first], tags) >= 60,
      );
      proxy.cutAll();
      // No close frame: Deno reports 1006 or 0.
      assert.ok([0, 1006].includes((await first.closed).code));

      await using second = await V1Socket.open(
        `ws://127.0.0.1:${s2.info.port}/`,
        { resume: first.resume },
      );
      const { welcome } = second;
      assert.equal(welcome.recovered, true);
      assert.ok(welcome.clientId.startsWith(`${s2.info.nodeId}.`));
      assert.equal(welcome.seq, first.lastSeq, "the seq counter moved along");
      assert.ok(
        countOf([first], tags) < 6 * ROUNDS,
        "the senders were still sending when the client moved",
      );

      assert.equal(await far.done, `sent far ${3 * ROUNDS} failed 0`);
      assert.equal(await near.done, `sent near ${3 * ROUNDS} failed 0`);
      await second.until(
        "every message arrived",
        () => countOf([first, second], tags) >= 6 * ROUNDS,
      );
      // Anything doubled would come now.
      await new Promise((resolve) => setTimeout(resolve, 200));
      assertExactlyOnce([first, second], tags, "the moved client");

      const newId = welcome.clientId;
      assert.equal(await api.isOnline(oldId), false, "the old clientId");
      assert.equal(await api.isOnline(newId), true);
      assert.equal(await api.getUidByClientId(newId), "u1");
      assert.deepEqual(await api.getClientIdsByUid("u1"), [newId]);
      assert.deepEqual(await api.getClientIdsByGroup("g1"), [newId]);
      assert.deepEqual(await api.getInfo(newId), { uid: "u1", group: "g1" });
      second.send("hi");
      await second.until(
        "the echo",
        () => second.received.at(-1) === "echo:hi",
      );
    },
  );

  await t.step(
    "a connection that seems open on its service does not keep the session there",
    async () => {
      await using proxy = await startCutProxy({
        target: `127.0.0.1:${s3.info.port}`,
      });
      const first = await V1Socket.open(
        `ws://${proxy.address}/?uid=u5&group=g5`,
      );
      await first.until("ready", () => first.received.includes("ready"));
      const target = {
        clientId: first.welcome.clientId,
        uid: "u5",
        group: "g5",
      };
      const tags = ["f1", "f3"];
      await using f1 = await Sender.start(s1.info.port, "f1", target);
      await using f3 = await Sender.start(s3.info.port, "f3", target);
      await first.until(
        "the burst is under way",
        () => countOf([first], tags) >= 60,
      );
      // A dead link that its service has not noticed: still attached there.
      proxy.freeze();
      // What was on its way to the client before the freeze comes in.
      await new Promise((resolve) => setTimeout(resolve, 200));
      const resume = first.resume;
      await using second = await V1Socket.open(
        `ws://127.0.0.1:${s2.info.port}/`,
        { resume },
      );
      assert.equal(second.welcome.recovered, true);
      assert.equal(second.welcome.seq, resume.seq);
      await f1.done;
      await f3.done;
      await second.until(
        "every message arrived",
        () => countOf([first, second], tags) >= 6 * ROUNDS,
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(
        first.lastSeq,
        resume.seq,
        "nothing came through the freeze",
      );
      assertExactlyOnce([first, second], tags, "the client behind it");
      proxy.cutAll();
    },
  );

  await t.step(
    "a service that stops (1012) during a burst hands its sessions over",
    async () => {
      const clients = await Promise.all(
        ["a", "b"].map((name) =>
          V1Socket.open(
            `ws://127.0.0.1:${s1.info.port}/?uid=u-${name}&group=g-${name}`,
          )
        ),
      );
      for (const client of clients) {
        await client.until("ready", () => client.received.includes("ready"));
      }
      const senders: Sender[] = [];
      const tagsOf = (name: string) => [`${name}3`, `${name}2`];
      for (const [i, name] of ["a", "b"].entries()) {
        const target = {
          clientId: clients[i]!.welcome.clientId,
          uid: `u-${name}`,
          group: `g-${name}`,
        };
        // From a third service, and from the one that takes them over.
        senders.push(await Sender.start(s3.info.port, `${name}3`, target));
        senders.push(await Sender.start(s2.info.port, `${name}2`, target));
      }
      for (const [i, client] of clients.entries()) {
        await client.until(
          "the burst is under way",
          () => countOf([client], tagsOf(["a", "b"][i]!)) >= 40,
        );
      }
      const stopped = s1.child.stop("SIGTERM");
      // Each client comes back on another service as soon as it is closed.
      const resumed = await Promise.all(clients.map(async (client) => {
        assert.equal((await client.closed).code, 1012);
        return await V1Socket.open(`ws://127.0.0.1:${s2.info.port}/`, {
          resume: client.resume,
        });
      }));
      const status = await stopped;
      assert.equal(status.code, 0, "the stopped service exits cleanly");
      for (const [i, next] of resumed.entries()) {
        assert.equal(next.welcome.recovered, true);
        assert.equal(next.welcome.seq, clients[i]!.lastSeq);
      }
      for (const sender of senders) {
        assert.match(await sender.done, /^sent /);
      }
      for (const [i, name] of ["a", "b"].entries()) {
        const sockets = [clients[i]!, resumed[i]!];
        await resumed[i]!.until(
          "every message arrived",
          () => countOf(sockets, tagsOf(name)) >= 6 * ROUNDS,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
      for (const [i, name] of ["a", "b"].entries()) {
        assertExactlyOnce(
          [clients[i]!, resumed[i]!],
          tagsOf(name),
          `client ${name}`,
        );
        assert.deepEqual(
          await api.getClientIdsByGroup(`g-${name}`),
          [resumed[i]!.welcome.clientId],
        );
      }
      for (const sender of senders) await sender[Symbol.asyncDispose]();
      for (const next of resumed) await next[Symbol.asyncDispose]();
    },
  );

  await t.step(
    "a service that joins just after a takeover reaches the moved client at once",
    async () => {
      await using proxy = await startCutProxy({
        target: `127.0.0.1:${s3.info.port}`,
      });
      const first = await V1Socket.open(
        `ws://${proxy.address}/?uid=u7&group=g7`,
      );
      await first.until("ready", () => first.received.includes("ready"));
      proxy.cutAll();
      await first.closed;
      await using second = await V1Socket.open(
        `ws://127.0.0.1:${s2.info.port}/`,
        { resume: first.resume },
      );
      assert.equal(second.welcome.recovered, true);
      const newId = second.welcome.clientId;
      // A member that was not asked for a fence, up a few hundred ms after
      // the hand-over (as a service restarted in a rolling deploy): what it
      // sends is not the holder's, so none of it may be dropped.
      await using newcomer = await startCaller(register.address);
      await eventually(
        "the newcomer sees the moved client",
        () => newcomer.api.isOnline(newId),
      );
      await newcomer.api.sendToClient(newId, "new:1");
      await newcomer.api.sendToUid("u7", "new:2");
      await newcomer.api.sendToGroup("g7", "new:3");
      const fromNewcomer = () =>
        second.received.map(textOf).filter((t) => t.startsWith("new:"));
      await second.until(
        "the newcomer's messages",
        () => fromNewcomer().length >= 3,
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(fromNewcomer(), ["new:1", "new:2", "new:3"]);
    },
  );

  await using s4 = await startTakeoverService(register.address);
  await untilMembers([s2, s3, s4], 4);

  await t.step(
    "a member that does not answer its fence holds the takeover up 2 s at most",
    async () => {
      await using proxy = await startCutProxy({
        target: `127.0.0.1:${s2.info.port}`,
      });
      const first = await V1Socket.open(
        `ws://${proxy.address}/?uid=u6&group=g6`,
      );
      await first.until("ready", () => first.received.includes("ready"));
      const target = {
        clientId: first.welcome.clientId,
        uid: "u6",
        group: "g6",
      };
      // From the holder and from the taker; the third service sends nothing.
      const tags = ["h2", "h4"];
      await using h2 = await Sender.start(s2.info.port, "h2", target);
      await using h4 = await Sender.start(s4.info.port, "h4", target);
      await first.until(
        "the burst is under way",
        () => countOf([first], tags) >= 30,
      );
      s3.child.signal("SIGSTOP");
      try {
        proxy.cutAll();
        await first.closed;
        await using second = await V1Socket.open(
          `ws://127.0.0.1:${s4.info.port}/`,
          { resume: first.resume },
        );
        assert.equal(second.welcome.recovered, true);
        assert.equal(second.welcome.seq, first.lastSeq);
        await h2.done;
        await h4.done;
        await second.until(
          "every message arrived",
          () => countOf([first, second], tags) >= 6 * ROUNDS,
        );
        await new Promise((resolve) => setTimeout(resolve, 200));
        assertExactlyOnce([first, second], tags, "the moved client");
      } finally {
        s3.child.signal("SIGCONT");
      }
    },
  );

  await t.step(
    "a killed service's sessions cannot come back: a fresh session works",
    async () => {
      const first = await V1Socket.open(
        `ws://127.0.0.1:${s4.info.port}/?uid=u4&group=g4`,
      );
      await first.until("ready", () => first.received.includes("ready"));
      s4.child.signal("SIGKILL");
      // No close frame: Deno reports 1006 or 0.
      assert.ok([0, 1006].includes((await first.closed).code));
      await using fresh = await V1Socket.open(
        `ws://127.0.0.1:${s2.info.port}/`,
        { resume: first.resume },
      );
      assert.equal(fresh.welcome.recovered, false);
      assert.equal(fresh.welcome.seq, 0);
      const id = fresh.welcome.clientId;
      assert.ok(id.startsWith(`${s2.info.nodeId}.`));
      assert.equal(await api.getUidByClientId(id), undefined);
      fresh.send("hi");
      await fresh.until("the echo", () => fresh.received.at(-1) === "echo:hi");
    },
  );
});
