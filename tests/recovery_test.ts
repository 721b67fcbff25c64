// The `wsgate.v1` protocol and the sessions of its clients on one service
// (docs/protocol.md): framing, the welcome, resuming after a connection is
// cut while another service keeps sending, what a detached client counts
// as, and how sessions end.

import assert from "node:assert/strict";
import type { Application, Service, ServiceOptions } from "../mod.ts";
import { startService } from "../mod.ts";
import {
  localServiceOptions,
  startCaller,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { textOf, V1Socket } from "./helpers/v1_socket.ts";
import { startCutProxy } from "./helpers/cut_proxy.ts";
import { eventually, settles } from "./helpers/waits.ts";
import { runScript, startServiceProcess } from "./helpers/processes.ts";

/** What the hooks of the holding service saw, in order. */
interface HookLog {
  readonly events: string[];
  readonly resumed: (string | undefined)[];
}

/**
 * An app that binds a client to the uid and group it asks for in the
 * URL (`?uid=u&group=g`) and echoes what it sends with `echo:`.
 */
function recordingApp(log: HookLog): Application {
  return {
    async onConnect(clientId, { api, request, resumed }) {
      log.events.push(`connect ${clientId}`);
      log.resumed.push(resumed?.previousClientId);
      if (resumed !== undefined) return;
      const url = new URL(request.url);
      const uid = url.searchParams.get("uid");
      const group = url.searchParams.get("group");
      if (uid !== null) await api.bindUid(clientId, uid);
      if (group !== null) await api.joinGroup(clientId, group);
    },
    async onMessage(clientId, message, { api }) {
      await api.sendToClient(
        clientId,
        typeof message === "string" ? `echo:${message}` : message,
      );
    },
    onClose(clientId) {
      log.events.push(`close ${clientId}`);
    },
  };
}

async function startHolder(
  register: string,
  log: HookLog,
  options: Partial<ServiceOptions> = {},
): Promise<Service> {
  return await startService(
    recordingApp(log),
    localServiceOptions(register, { name: "holder", ...options }),
  );
}

Deno.test("a raw client sees no subprotocol and raw frames", async () => {
  await using register = await startLocalRegister();
  const log: HookLog = { events: [], resumed: [] };
  await using service = await startHolder(register.address, log);
  const socket = new WebSocket(`ws://127.0.0.1:${service.port}/`);
  const received: string[] = [];
  socket.onmessage = (e) => received.push(e.data);
  await new Promise((resolve) => socket.onopen = resolve);
  assert.equal(socket.protocol, "");
  socket.send("hi");
  await eventually("the echo arrives", () => received.length === 1);
  assert.deepEqual(received, ["echo:hi"]);
  assert.deepEqual(log.resumed, [undefined]);
  const closed = new Promise<CloseEvent>((resolve) => socket.onclose = resolve);
  await service.close();
  assert.equal((await closed).code, 1001);
});

Deno.test("wsgate.v1: hello, welcome, then text and binary with seqs", async () => {
  await using register = await startLocalRegister();
  const log: HookLog = { events: [], resumed: [] };
  await using service = await startHolder(register.address, log);
  await using client = await V1Socket.open(
    `ws://127.0.0.1:${service.port}/`,
  );
  assert.equal(client.welcome.recovered, false);
  assert.equal(client.welcome.seq, 0);
  assert.match(client.welcome.clientId, new RegExp(`^${service.nodeId}\\.`));
  assert.match(
    client.welcome.token,
    new RegExp(
      `^${client.welcome.clientId.replace(".", "\\.")}\\.[A-Za-z0-9_-]{22,}$`,
    ),
  );
  assert.equal(await service.api.isOnline(client.welcome.clientId), true);
  client.send("a:b");
  client.send(new Uint8Array([1, 2, 3]));
  await client.until("two echoes", () => client.received.length === 2);
  assert.equal(client.received[0], "echo:a:b");
  assert.deepEqual(client.received[1], new Uint8Array([1, 2, 3]));
  // A seq past 127 takes two varint bytes.
  for (let i = 0; i < 200; i++) {
    await service.api.sendToClient(
      client.welcome.clientId,
      new Uint8Array([i]),
    );
  }
  await client.until("202 frames", () => client.received.length === 202);
  assert.equal(client.lastSeq, 202);
  assert.deepEqual(client.received[201], new Uint8Array([199]));
  client.ping();
  await client.until("a pong", () => client.control.length === 1);
  assert.deepEqual(JSON.parse(client.control[0]!), { type: "pong" });
  assert.deepEqual(client.errors, []);
});

/** Checks that `received` has `prefix:0` to `prefix:(n-1)`, once each, in order. */
function assertStream(received: string[], prefix: string, n: number): void {
  const got = received.filter((m) => m.startsWith(`${prefix}:`));
  const expected = Array.from({ length: n }, (_, i) => `${prefix}:${i}`);
  assert.deepEqual(got, expected, `the ${prefix} stream`);
}

Deno.test("wsgate.v1: a client cut off resumes on the same service and misses nothing", async () => {
  await using register = await startLocalRegister();
  const log: HookLog = { events: [], resumed: [] };
  await using holder = await startHolder(register.address, log);
  await using sender = await startCaller(register.address);
  await using proxy = await startCutProxy({
    target: `127.0.0.1:${holder.port}`,
  });
  const url = `ws://${proxy.address}/?uid=alice&group=room`;
  const first = await V1Socket.open(url);
  const { clientId } = first.welcome;
  await eventually(
    "the client is bound and in its group",
    async () =>
      await sender.api.isUidOnline("alice") &&
      await sender.api.getClientCountByGroup("room") === 1,
  );

  const N = 300;
  let sent = 0;
  const sending = (async () => {
    for (let i = 0; i < N; i++) {
      await sender.api.sendToClient(clientId, `c:${i}`);
      await sender.api.sendToUid("alice", `u:${i}`);
      await sender.api.sendToGroup("room", `g:${i}`);
      sent = i + 1;
      if (i % 10 === 9) await new Promise((r) => setTimeout(r, 2));
    }
  })();

  await eventually("a third was sent", () => sent >= N / 3);
  proxy.cutAll();
  const cut = await settles("the client sees the cut", first.closed);
  // Deno's WebSocket says 0 where a browser says 1006: no close frame.
  assert.ok(cut.code === 1006 || cut.code === 0, `code ${cut.code}`);
  await eventually(
    "the holder takes the client offline",
    async () => !(await sender.api.isOnline(clientId)),
  );
  // Detached: offline to every query, while its session keeps what comes.
  assert.equal(await sender.api.isUidOnline("alice"), false);
  assert.equal(await sender.api.getClientCountByGroup("room"), 0);
  assert.equal(await sender.api.getAllClientCount(), 0);
  assert.deepEqual(await sender.api.getClientIdsByUid("alice"), []);
  assert.deepEqual(await holder.api.getAllClientIds(), []);
  const metrics = await fetch(`http://127.0.0.1:${holder.port}/metrics`);
  assert.match(await metrics.text(), /^wsgate_sessions_detached 1$/m);
  const atBreak = sent;
  await eventually("more is sent while detached", () => sent >= atBreak + 30);

  const second = await V1Socket.open(url, { resume: first.resume });
  assert.equal(second.welcome.recovered, true);
  assert.equal(second.welcome.clientId, clientId);
  assert.equal(second.welcome.seq, first.lastSeq);
  assert.notEqual(second.welcome.token, first.welcome.token);
  await sending;
  await second.until(
    "every message arrived",
    () => first.received.length + second.received.length >= 3 * N,
  );
  // Nothing late and duplicated.
  await new Promise((r) => setTimeout(r, 100));
  const all = [...first.received, ...second.received].map(textOf);
  assert.equal(all.length, 3 * N);
  for (const prefix of ["c", "u", "g"]) assertStream(all, prefix, N);
  assert.deepEqual([...first.errors, ...second.errors], []);

  // Back online with its uid and group, its hooks in order.
  assert.equal(await sender.api.isOnline(clientId), true);
  assert.deepEqual(await sender.api.getClientIdsByUid("alice"), [clientId]);
  assert.equal(await sender.api.getClientCountByGroup("room"), 1);
  assert.deepEqual(log.events, [
    `connect ${clientId}`,
    `close ${clientId}`,
    `connect ${clientId}`,
  ]);
  assert.deepEqual(log.resumed, [undefined, clientId]);
  assert.equal(proxy.accepted, 2);
});

/** Cuts `client` off through `proxy` and waits until the holder sees it. */
async function cutOff(
  proxy: { cutAll(): void },
  client: V1Socket,
  holder: Service,
): Promise<void> {
  proxy.cutAll();
  await settles("the client sees the cut", client.closed);
  await eventually(
    "the holder takes the client offline",
    async () => !(await holder.api.isOnline(client.welcome.clientId)),
  );
}

Deno.test("wsgate.v1: sessions that cannot recover give a fresh one", async (t) => {
  await using register = await startLocalRegister();
  const log: HookLog = { events: [], resumed: [] };
  await using holder = await startHolder(register.address, log, {
    recovery: { windowMs: 400, maxBytes: 1000 },
  });
  await using proxy = await startCutProxy({
    target: `127.0.0.1:${holder.port}`,
  });
  const url = `ws://${proxy.address}/?uid=bob&group=team`;
  const bound = async () =>
    await holder.api.isUidOnline("bob") &&
    await holder.api.getClientCountByGroup("team") === 1;

  await t.step("a wrong token, then the right one", async () => {
    const first = await V1Socket.open(url);
    await eventually("bound", bound);
    await cutOff(proxy, first, holder);
    const { token, seq } = first.resume;
    const last = token.at(-1) === "A" ? "B" : "A";
    await using wrong = await V1Socket.open(`ws://${proxy.address}/`, {
      resume: { token: token.slice(0, -1) + last, seq },
    });
    assert.equal(wrong.welcome.recovered, false);
    assert.notEqual(wrong.welcome.clientId, first.welcome.clientId);
    assert.equal(wrong.welcome.seq, 0);
    // The wrong token did not touch the session.
    await using right = await V1Socket.open(`ws://${proxy.address}/`, {
      resume: first.resume,
    });
    assert.equal(right.welcome.recovered, true);
    assert.equal(right.welcome.clientId, first.welcome.clientId);
    assert.equal(await bound(), true);
    // The old token was replaced by the new one.
    await right.close(1000);
  });

  await t.step("the client's 1000 ends the session", async () => {
    const first = await V1Socket.open(url);
    await eventually("bound", bound);
    await first.close(1000);
    await eventually("offline", async () => !(await bound()));
    await using again = await V1Socket.open(`ws://${proxy.address}/`, {
      resume: first.resume,
    });
    assert.equal(again.welcome.recovered, false);
    assert.notEqual(again.welcome.clientId, first.welcome.clientId);
    assert.equal(await holder.api.isUidOnline("bob"), false);
  });

  await t.step("the window passes: uid and groups are released", async () => {
    const first = await V1Socket.open(url);
    await eventually("bound", bound);
    await cutOff(proxy, first, holder);
    await new Promise((r) => setTimeout(r, 600));
    await holder.api.sendToUid("bob", "lost");
    await using again = await V1Socket.open(`ws://${proxy.address}/`, {
      resume: first.resume,
    });
    assert.equal(again.welcome.recovered, false);
    assert.equal(await holder.api.isUidOnline("bob"), false);
    assert.equal(await holder.api.getClientCountByGroup("team"), 0);
    await holder.api.sendToUid("bob", "nobody");
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(again.received, []);
  });

  await t.step("more than maxBytes while detached: released", async () => {
    const first = await V1Socket.open(url);
    await eventually("bound", bound);
    await cutOff(proxy, first, holder);
    for (let i = 0; i < 3; i++) {
      await holder.api.sendToGroup("team", "x".repeat(400));
    }
    // Released at once, not at the end of the window.
    await using again = await V1Socket.open(`ws://${proxy.address}/`, {
      resume: first.resume,
    });
    assert.equal(again.welcome.recovered, false);
    assert.equal(await holder.api.isUidOnline("bob"), false);
    assert.deepEqual(again.received, []);
  });

  await t.step("within maxBytes, what was sent comes back", async () => {
    const first = await V1Socket.open(url);
    await eventually("bound", bound);
    await cutOff(proxy, first, holder);
    for (let i = 0; i < 2; i++) {
      await holder.api.sendToGroup("team", `${i}`.repeat(400));
    }
    await using again = await V1Socket.open(`ws://${proxy.address}/`, {
      resume: first.resume,
    });
    assert.equal(again.welcome.recovered, true);
    await again.until("both", () => again.received.length === 2);
    assert.deepEqual(again.received, ["0".repeat(400), "1".repeat(400)]);
    assert.deepEqual(again.errors, []);
  });
});

Deno.test("wsgate.v1: recovery false gives seqs but never a session", async () => {
  await using register = await startLocalRegister();
  const log: HookLog = { events: [], resumed: [] };
  await using holder = await startHolder(register.address, log, {
    recovery: false,
  });
  await using proxy = await startCutProxy({
    target: `127.0.0.1:${holder.port}`,
  });
  const first = await V1Socket.open(`ws://${proxy.address}/?uid=carol`);
  await eventually("bound", () => holder.api.isUidOnline("carol"));
  await holder.api.sendToUid("carol", "one");
  await first.until("one", () => first.received.length === 1);
  assert.equal(first.lastSeq, 1);
  await cutOff(proxy, first, holder);
  await using again = await V1Socket.open(`ws://${proxy.address}/`, {
    resume: first.resume,
  });
  assert.equal(again.welcome.recovered, false);
  assert.equal(await holder.api.isUidOnline("carol"), false);
});

Deno.test("wsgate.v1: a bad first frame or none closes with 1002", async () => {
  await using register = await startLocalRegister();
  const log: HookLog = { events: [], resumed: [] };
  await using holder = await startHolder(register.address, log, {
    helloTimeoutMs: 200,
  });
  const url = `ws://127.0.0.1:${holder.port}/`;
  for (const bad of [":data first", '{"type":"ping"}', "{not json", "plain"]) {
    await assert.rejects(
      V1Socket.open(url, { rawHello: bad }),
      /closed before the welcome: 1002/,
    );
  }
  const silent = new WebSocket(url, "wsgate.v1");
  const closed = new Promise<CloseEvent>((resolve) => silent.onclose = resolve);
  assert.equal((await closed).code, 1002);
  // After the welcome, a frame that is neither data nor control.
  const client = await V1Socket.open(url);
  client.socket.send("no prefix");
  assert.equal((await client.closed).code, 1002);
  assert.deepEqual(log.events.filter((e) => e.startsWith("connect")).length, 1);
});

Deno.test("wsgate.v1: closing the service sends 1012 to v1 and 1001 to raw clients", async () => {
  await using register = await startLocalRegister();
  const log: HookLog = { events: [], resumed: [] };
  const holder = await startHolder(register.address, log);
  const v1 = await V1Socket.open(`ws://127.0.0.1:${holder.port}/`);
  const raw = new WebSocket(`ws://127.0.0.1:${holder.port}/`);
  const rawClosed = new Promise<CloseEvent>((resolve) => raw.onclose = resolve);
  await new Promise((resolve) => raw.onopen = resolve);
  await holder.close();
  assert.equal((await v1.closed).code, 1012);
  assert.equal((await rawClosed).code, 1001);
});

Deno.test("wsgate.v1: an onHandshake refusal is an accepted upgrade closed with 4000 + status", async () => {
  await using register = await startLocalRegister();
  const app: Application = {
    onHandshake: () =>
      new Response("forbidden: " + "é".repeat(100), { status: 403 }),
  };
  await using service = await startService(
    app,
    localServiceOptions(register.address),
  );
  const url = `ws://127.0.0.1:${service.port}/`;
  const v1 = new WebSocket(url, "wsgate.v1");
  const closed = new Promise<CloseEvent>((resolve) => v1.onclose = resolve);
  const event = await closed;
  assert.equal(event.code, 4403);
  assert.equal(new TextEncoder().encode(event.reason).length <= 120, true);
  assert.ok(event.reason.startsWith("forbidden: éé"), event.reason);
  // A plain client still gets the HTTP answer.
  const answer = await fetch(`http://127.0.0.1:${service.port}/`, {
    headers: {
      connection: "Upgrade",
      upgrade: "websocket",
      "sec-websocket-version": "13",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    },
  });
  assert.equal(answer.status, 403);
  await answer.body?.cancel();
});

Deno.test("wsgate.v1: a frozen link found by the heartbeat keeps the session", async () => {
  await using register = await startLocalRegister();
  const log: HookLog = { events: [], resumed: [] };
  await using holder = await startHolder(register.address, log, {
    idleTimeoutMs: 400,
  });
  await using proxy = await startCutProxy({
    target: `127.0.0.1:${holder.port}`,
  });
  const first = await V1Socket.open(`ws://${proxy.address}/?uid=dave`);
  await eventually("bound", () => holder.api.isUidOnline("dave"));
  proxy.freeze();
  await holder.api.sendToUid("dave", "while frozen");
  await eventually(
    "the heartbeat gives up on the client",
    async () => !(await holder.api.isOnline(first.welcome.clientId)),
  );
  await holder.api.sendToUid("dave", "while detached");
  // Resumed directly: the frozen link is left behind.
  await using again = await V1Socket.open(`ws://127.0.0.1:${holder.port}/`, {
    resume: first.resume,
  });
  assert.equal(again.welcome.recovered, true);
  await again.until("both", () => again.received.length === 2);
  assert.deepEqual(again.received, ["while frozen", "while detached"]);
  proxy.thaw();
  await proxy.close();
  await first.closed;
});

Deno.test("wsgate.v1: through service.handler in the application's server", async () => {
  await using register = await startLocalRegister();
  const log: HookLog = { events: [], resumed: [] };
  await using holder = await startHolder(register.address, log, {
    port: false,
  });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request, info) =>
      new URL(request.url).pathname === "/refuse"
        ? new Response("no", { status: 401 })
        : holder.handler(request, info),
  );
  try {
    await using proxy = await startCutProxy({
      target: `127.0.0.1:${server.addr.port}`,
    });
    const first = await V1Socket.open(`ws://${proxy.address}/?group=mounted`);
    await eventually(
      "in its group",
      async () => await holder.api.getClientCountByGroup("mounted") === 1,
    );
    await holder.api.sendToGroup("mounted", new Uint8Array([7]));
    await first.until("the first", () => first.received.length === 1);
    await cutOff(proxy, first, holder);
    await holder.api.sendToGroup("mounted", "missed");
    const again = await V1Socket.open(`ws://${proxy.address}/`, {
      resume: first.resume,
    });
    assert.equal(again.welcome.recovered, true);
    assert.equal(again.welcome.clientId, first.welcome.clientId);
    await again.until("the missed one", () => again.received.length === 1);
    assert.deepEqual(again.received, ["missed"]);
    assert.equal(again.lastSeq, 2);
    // Seqs past 127 take two varint bytes here too.
    for (let i = 0; i < 200; i++) {
      await holder.api.sendToGroup("mounted", new Uint8Array([i, i]));
    }
    await again.until("200 more", () => again.received.length === 201);
    assert.deepEqual(again.received[200], new Uint8Array([199, 199]));
    assert.equal(again.lastSeq, 202);
    assert.deepEqual([...first.errors, ...again.errors], []);
    await again.close(1000);
  } finally {
    await server.shutdown();
  }
});

Deno.test("service.ts takes recovery from its flags and variables", async (t) => {
  await t.step("--help lists them", async () => {
    const { code, stdout } = await runScript("service.ts", ["--help"]);
    assert.equal(code, 0);
    for (
      const [flag, env] of [
        ["--recovery-window-ms", "WSGATE_RECOVERY_WINDOW_MS"],
        ["--recovery-max-bytes", "WSGATE_RECOVERY_MAX_BYTES"],
        ["--no-recovery", "WSGATE_NO_RECOVERY"],
        ["--hello-timeout-ms", "WSGATE_HELLO_TIMEOUT_MS"],
      ]
    ) {
      assert.match(stdout, new RegExp(`${flag}\\b[^\\n]*\\n?[^\\n]*${env}`));
    }
  });
  await t.step("--no-recovery with a window is a usage error", async () => {
    const { code, stderr } = await runScript("service.ts", [
      "--app",
      "tests/fixtures/echo_app.ts",
      "--no-recovery",
      "--recovery-window-ms",
      "5",
    ]);
    assert.equal(code, 2);
    assert.match(stderr, /--no-recovery/);
  });
  await t.step(
    "WSGATE_NO_RECOVERY=1: a resume gives a fresh session",
    async () => {
      await using register = await startLocalRegister();
      const service = await startServiceProcess(register.address, [], {
        env: { WSGATE_NO_RECOVERY: "1" },
      });
      try {
        await using proxy = await startCutProxy({
          target: `127.0.0.1:${service.info.port}`,
        });
        const first = await V1Socket.open(`ws://${proxy.address}/`);
        proxy.cutAll();
        await first.closed;
        await using again = await V1Socket.open(`ws://${proxy.address}/`, {
          resume: first.resume,
        });
        assert.equal(again.welcome.recovered, false);
      } finally {
        await service.child.stop();
      }
    },
  );
});

Deno.test("wsgate.v1: a resume while the old connection seems open takes the session over", async () => {
  await using register = await startLocalRegister();
  const events: string[] = [];
  const app: Application = {
    async onConnect(clientId, { api, resumed }) {
      events.push(`connect ${clientId} ${resumed?.previousClientId ?? "new"}`);
      if (resumed === undefined) await api.bindUid(clientId, "erin");
    },
    async onClose(clientId) {
      events.push(`close ${clientId} start`);
      // A slow onClose: the resumed connection's onConnect waits for it.
      await new Promise((r) => setTimeout(r, 150));
      events.push(`close ${clientId} end`);
    },
  };
  await using holder = await startService(
    app,
    localServiceOptions(register.address, { idleTimeoutMs: 0 }),
  );
  await using proxy = await startCutProxy({
    target: `127.0.0.1:${holder.port}`,
  });
  const first = await V1Socket.open(`ws://${proxy.address}/`);
  const { clientId } = first.welcome;
  await eventually("bound", () => holder.api.isUidOnline("erin"));
  proxy.freeze();
  await holder.api.sendToUid("erin", "into the void");
  // The holder has no heartbeat: it still counts the old connection.
  assert.equal(await holder.api.isOnline(clientId), true);
  const again = await V1Socket.open(`ws://127.0.0.1:${holder.port}/`, {
    resume: first.resume,
  });
  assert.equal(again.welcome.recovered, true);
  assert.equal(again.welcome.clientId, clientId);
  await again.until("the missed one", () => again.received.length === 1);
  assert.deepEqual(again.received, ["into the void"]);
  await eventually("onConnect ran again", () => events.length === 4);
  assert.deepEqual(events, [
    `connect ${clientId} new`,
    `close ${clientId} start`,
    `close ${clientId} end`,
    `connect ${clientId} ${clientId}`,
  ]);
  assert.equal(await holder.api.isUidOnline("erin"), true);
  await again.close(1000);
  proxy.thaw();
  await proxy.close();
  await first.closed;
});
