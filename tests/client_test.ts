// The client library (client.ts) against real services: what it sends and
// gets, close() for good, several URLs, backoff bounds, what send holds
// while it is away and its bound, the close codes that stop it, recovery
// after a cut connection (through a TCP proxy that cuts without close
// frames, or freezes), the heartbeat, and 1012.

import assert from "node:assert/strict";
import {
  ClientError,
  type CloseDetail,
  connect,
  type GatewayClient,
  type OpenDetail,
} from "../client.ts";
import {
  type Application,
  type Message,
  type Service,
  type ServiceOptions,
  startService,
} from "../mod.ts";
import {
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { startCutProxy } from "./helpers/cut_proxy.ts";
import { eventually } from "./helpers/waits.ts";

/** What a client saw, by event. */
class Recorder {
  readonly opens: OpenDetail[] = [];
  readonly closes: CloseDetail[] = [];
  readonly messages: Message[] = [];
  readonly client: GatewayClient;

  constructor(client: GatewayClient) {
    this.client = client;
    client.addEventListener("open", (e) => this.opens.push(e.detail));
    client.addEventListener("close", (e) => this.closes.push(e.detail));
    client.addEventListener("message", (e) => this.messages.push(e.data));
  }

  /** Waits until `n` open events arrived; returns the last. */
  async opened(n = 1): Promise<OpenDetail> {
    await eventually(`open #${n}`, () => this.opens.length >= n);
    return this.opens[n - 1]!;
  }

  /** Waits until the client closed for good; returns that close event. */
  async ended(): Promise<CloseDetail> {
    await eventually("the client closes for good", () => {
      return this.closes.some((c) => !c.reconnecting);
    });
    return this.closes.find((c) => !c.reconnecting)!;
  }

  /** Waits until `n` messages arrived. */
  async received(n: number): Promise<Message[]> {
    await eventually(
      `${n} messages (got ${this.messages.length})`,
      () => this.messages.length >= n,
    );
    return this.messages;
  }

  /**
   * Waits until `n` messages each of "c", "u" and "g" arrived, then checks
   * that each of c1..cN, u1..uN, g1..gN came once, in order, and, a moment
   * later, that nothing else came.
   */
  async receivedEachOnce(n: number): Promise<void> {
    await this.received(3 * n);
    await sleep(200); // nothing more, twice, comes later
    for (const prefix of ["c", "u", "g"]) {
      assert.deepEqual(
        this.messages.filter((m) =>
          typeof m === "string" && m.startsWith(prefix)
        ),
        numbered(prefix, n),
        `every ${prefix}… once, in order`,
      );
    }
    assert.equal(this.messages.length, 3 * n);
  }
}

/** What a service's hooks saw. */
interface Seen {
  handshakes: number;
  connects: string[];
  closes: string[];
  messages: Message[];
}

/**
 * Echoes what a client sends back to it; sends `hello` and three bytes on
 * connect; `?refuse=403` refuses the handshake with that status.
 */
function echoApp(seen: Seen): Application {
  return {
    onHandshake(request) {
      seen.handshakes++;
      const refuse = new URL(request.url).searchParams.get("refuse");
      if (refuse !== null) {
        return new Response("go away", { status: Number(refuse) });
      }
    },
    async onConnect(clientId, { api }) {
      seen.connects.push(clientId);
      await api.sendToClient(clientId, "hello");
      await api.sendToClient(clientId, new Uint8Array([1, 2, 3]));
    },
    async onMessage(clientId, message, { api }) {
      seen.messages.push(message);
      await api.sendToClient(clientId, message);
    },
    onClose(clientId) {
      seen.closes.push(clientId);
    },
  };
}

function newSeen(): Seen {
  return { handshakes: 0, connects: [], closes: [], messages: [] };
}

/** A loopback port where nothing listens. */
function deadPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

function wsUrl(port: number, query = ""): string {
  return `ws://127.0.0.1:${port}/${query}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function startEcho(
  register: string,
  seen: Seen,
  options: Partial<ServiceOptions> = {},
): Promise<Service> {
  return await startService(
    echoApp(seen),
    localServiceOptions(register, options),
  );
}

Deno.test("connect() opens a session; text and binary arrive as sent, both ways", async () => {
  await using register = await startLocalRegister();
  const seen = newSeen();
  await using service = await startEcho(register.address, seen);
  const recorder = new Recorder(connect(wsUrl(service.port)));
  const { client } = recorder;
  try {
    assert.equal(client.state, "connecting");
    const open = await recorder.opened();
    assert.equal(open.recovered, false);
    assert.deepEqual(seen.connects, [open.clientId]);
    assert.equal(client.clientId, open.clientId);
    assert.equal(client.state, "open");
    assert.deepEqual(await service.api.getAllClientIds(), [open.clientId]);

    client.send("text: ünïcødé, {json} and 1:2");
    client.send(new Uint8Array([0, 255, 128, 7]));
    client.send("");
    const got = await recorder.received(5);
    assert.deepEqual(got, [
      "hello",
      new Uint8Array([1, 2, 3]),
      "text: ünïcødé, {json} and 1:2",
      new Uint8Array([0, 255, 128, 7]),
      "",
    ]);
    assert.deepEqual(seen.messages, got.slice(2));
    assert.equal(typeof got[0], "string");
    assert.ok(got[1] instanceof Uint8Array);
  } finally {
    client.close();
  }
});

Deno.test("close() ends the session for good: no reconnect, the service forgets the client", async () => {
  await using register = await startLocalRegister();
  const seen = newSeen();
  await using service = await startEcho(register.address, seen);
  const recorder = new Recorder(
    connect(wsUrl(service.port), { minDelayMs: 20, maxDelayMs: 40 }),
  );
  const { client } = recorder;
  const { clientId } = await recorder.opened();
  client.close();
  assert.equal(client.state, "closed");
  assert.deepEqual(recorder.closes, [
    { code: 1000, reason: "", reconnecting: false },
  ]);
  await eventually("the service ran onClose", () => seen.closes.length === 1);
  assert.deepEqual(seen.closes, [clientId]);
  // Long enough for many reconnects at these delays, had there been any.
  await sleep(400);
  assert.equal(seen.handshakes, 1);
  assert.equal(recorder.opens.length, 1);
  assert.equal(await service.api.isOnline(clientId), false);
  assert.throws(
    () => client.send("too late"),
    (e) => e instanceof ClientError && e.code === "closed",
  );
  client.close(); // a second close does nothing
  assert.equal(recorder.closes.length, 1);
});

Deno.test("connect() with several URLs: the first is dead, the client opens on the second", async () => {
  await using register = await startLocalRegister();
  const seen = newSeen();
  await using service = await startEcho(register.address, seen);
  const urls = [wsUrl(deadPort()), wsUrl(service.port)];
  const recorder = new Recorder(connect(urls, { minDelayMs: 20 }));
  try {
    const open = await recorder.opened();
    assert.deepEqual(seen.connects, [open.clientId]);
    assert.equal(recorder.client.url, urls[1]);
    assert.deepEqual(await recorder.received(2), [
      "hello",
      new Uint8Array([1, 2, 3]),
    ]);
    // A failed attempt before the first open fires no close event.
    assert.deepEqual(recorder.closes, []);
  } finally {
    recorder.client.close();
  }
});

Deno.test("failed attempts back off between minDelayMs and maxDelayMs, over every URL", async () => {
  // Two TCP listeners that accept and hang up at once: every attempt fails.
  const attempts: { at: number; port: number }[] = [];
  const listeners = [0, 1].map(() =>
    Deno.listen({ hostname: "127.0.0.1", port: 0 })
  );
  const accepting = listeners.map(async (listener) => {
    for await (const conn of listener) {
      attempts.push({ at: performance.now(), port: listener.addr.port });
      conn.close();
    }
  });
  const minDelayMs = 100;
  const maxDelayMs = 400;
  const client = connect(
    listeners.map((l) => wsUrl(l.addr.port)),
    { minDelayMs, maxDelayMs },
  );
  const closes: CloseDetail[] = [];
  client.addEventListener("close", (e) => closes.push(e.detail));
  try {
    await sleep(3000);
  } finally {
    client.close();
    for (const listener of listeners) listener.close();
    await Promise.allSettled(accepting);
  }
  // Bounded by minDelayMs: at most one attempt per 100 ms (plus the first);
  // and by maxDelayMs: at least one per 400 ms plus what an attempt takes.
  assert.ok(attempts.length <= 31, `${attempts.length} attempts in 3 s`);
  assert.ok(attempts.length >= 5, `${attempts.length} attempts in 3 s`);
  const gaps = attempts.slice(1).map((a, i) => a.at - attempts[i]!.at);
  for (const [i, gap] of gaps.entries()) {
    assert.ok(gap >= minDelayMs - 5, `gap ${i} is ${gap} ms`);
    assert.ok(gap <= maxDelayMs + 1000, `gap ${i} is ${gap} ms`);
  }
  // From the fourth failure on, the cap is reached: at least half of it.
  for (const [i, gap] of gaps.slice(3).entries()) {
    assert.ok(gap >= maxDelayMs / 2 - 5, `gap ${i + 3} is ${gap} ms`);
  }
  // Round and round over the URLs.
  for (const [i, attempt] of attempts.entries()) {
    assert.equal(attempt.port, listeners[i % 2]!.addr.port);
  }
  assert.deepEqual(closes, [{ code: 1000, reason: "", reconnecting: false }]);
});

Deno.test("send() holds what it gets until the first open, up to maxBufferedMessages and maxBufferedBytes", async (t) => {
  await using register = await startLocalRegister();
  const seen = newSeen();
  const port = deadPort();

  await t.step("past maxBufferedMessages, send throws buffer_full", () => {
    const client = connect(wsUrl(deadPort()), {
      minDelayMs: 50,
      maxBufferedMessages: 3,
    });
    try {
      for (const m of ["a", "b", "c"]) client.send(m);
      assert.throws(
        () => client.send("d"),
        (e) => e instanceof ClientError && e.code === "buffer_full",
      );
      assert.equal(client.bufferedMessages, 3);
      assert.equal(client.bufferedBytes, 3);
    } finally {
      client.close();
    }
    assert.equal(client.bufferedMessages, 0);
  });

  await t.step("past maxBufferedBytes, send throws buffer_full", () => {
    const client = connect(wsUrl(deadPort()), {
      minDelayMs: 50,
      maxBufferedBytes: 10,
    });
    try {
      client.send("ü".repeat(4)); // 8 bytes
      client.send(new Uint8Array(2));
      assert.throws(
        () => client.send("x"),
        (e) => e instanceof ClientError && e.code === "buffer_full",
      );
      assert.equal(client.bufferedBytes, 10);
    } finally {
      client.close();
    }
  });

  await t.step(
    "what was held arrives, in order, once the service is up",
    async () => {
      const recorder = new Recorder(
        connect(wsUrl(port), { minDelayMs: 50, maxDelayMs: 200 }),
      );
      try {
        recorder.client.send("one");
        recorder.client.send(new Uint8Array([2]));
        recorder.client.send("three");
        assert.equal(recorder.client.bufferedMessages, 3);
        // What an open listener sends comes after what was held.
        recorder.client.addEventListener("open", () => {
          recorder.client.send("from open");
        });
        await sleep(300); // a few failed attempts
        await using _service = await startEcho(register.address, seen, {
          port,
        });
        await recorder.opened();
        await recorder.received(6);
        assert.deepEqual(seen.messages, [
          "one",
          new Uint8Array([2]),
          "three",
          "from open",
        ]);
        assert.deepEqual(recorder.messages.slice(2), seen.messages);
        assert.equal(recorder.client.bufferedMessages, 0);
      } finally {
        recorder.client.close();
      }
    },
  );
});

Deno.test("no reconnect after 1008, 1009 or a refusal by onHandshake (4403)", async (t) => {
  await using register = await startLocalRegister();
  const seen = newSeen();
  await using service = await startEcho(register.address, seen, {
    maxMessageBytes: 1000,
    rateLimit: { messagesPerSecond: 1, burst: 3 },
  });
  const options = { minDelayMs: 20, maxDelayMs: 40 };

  async function noReconnect(recorder: Recorder, handshakes: number) {
    await sleep(400); // many reconnects at these delays, had there been any
    assert.equal(seen.handshakes, handshakes);
    assert.equal(recorder.client.state, "closed");
    assert.equal(recorder.closes.filter((c) => !c.reconnecting).length, 1);
  }

  await t.step("1009: a message past maxMessageBytes", async () => {
    const before = seen.handshakes;
    const recorder = new Recorder(connect(wsUrl(service.port), options));
    await recorder.opened();
    recorder.client.send("x".repeat(2000));
    const end = await recorder.ended();
    assert.equal(end.code, 1009);
    assert.equal(end.reconnecting, false);
    await noReconnect(recorder, before + 1);
  });

  await t.step("1008: faster than the rate limit", async () => {
    const before = seen.handshakes;
    const recorder = new Recorder(connect(wsUrl(service.port), options));
    await recorder.opened();
    for (let i = 0; i < 20; i++) recorder.client.send(`m${i}`);
    const end = await recorder.ended();
    assert.equal(end.code, 1008);
    assert.equal(end.reason, "rate limit");
    await noReconnect(recorder, before + 1);
  });

  await t.step("4403: onHandshake answered 403", async () => {
    const before = seen.handshakes;
    const recorder = new Recorder(
      connect(wsUrl(service.port, "?refuse=403"), options),
    );
    const end = await recorder.ended();
    assert.equal(end.code, 4403);
    assert.equal(end.reason, "go away");
    assert.deepEqual(recorder.opens, []);
    await noReconnect(recorder, before + 1);
  });
});

/**
 * Binds each new client to uid "u" and group "g" (a returning one keeps
 * them), and records what it gets.
 */
function bindingApp(seen: Seen): Application {
  return {
    async onConnect(clientId, { api, resumed }) {
      seen.connects.push(clientId);
      if (resumed !== undefined) return;
      await api.bindUid(clientId, "u");
      await api.joinGroup(clientId, "g");
    },
    onMessage(_clientId, message) {
      seen.messages.push(message);
    },
    onClose(clientId) {
      seen.closes.push(clientId);
    },
  };
}

/**
 * Closes `client` and, when it was open, waits until its service ran
 * onClose for it: a close frame that a proxy cut on its way would leave the
 * session waiting for its client, and the service's close waiting for it.
 */
async function closeSeen(client: GatewayClient, seen: Seen): Promise<void> {
  const before = seen.closes.length;
  const open = client.state === "open";
  client.close();
  if (open) {
    await eventually("the service saw the close", () => {
      return seen.closes.length > before;
    }).catch(() => {}); // only to speed the clean-up up
  }
}

/** A register, a bindingApp service, and a cut proxy in front of it. */
interface Proxied extends AsyncDisposable {
  readonly register: Awaited<ReturnType<typeof startLocalRegister>>;
  /** What the service's hooks saw. */
  readonly seen: Seen;
  readonly service: Service;
  readonly proxy: Awaited<ReturnType<typeof startCutProxy>>;
}

/** Starts a {@linkcode Proxied}; disposing it closes the three, proxy first. */
async function startProxied(): Promise<Proxied> {
  await using stack = new AsyncDisposableStack();
  const register = stack.use(await startLocalRegister());
  const seen = newSeen();
  const service = stack.use(
    await startService(bindingApp(seen), localServiceOptions(register.address)),
  );
  const proxy = stack.use(
    await startCutProxy({ target: `127.0.0.1:${service.port}` }),
  );
  const owned = stack.move();
  return {
    register,
    seen,
    service,
    proxy,
    [Symbol.asyncDispose]: () => owned.disposeAsync(),
  };
}

/** `prefix1` .. `prefixN`. */
function numbered(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`);
}

Deno.test("a cut connection recovers on the same service: same clientId, what was sent meanwhile arrives once, in order", async () => {
  await using cluster = await startProxied();
  const { register, seen, proxy } = cluster;
  // The sender is another service: its sends cross the peer link.
  await using sender = await startService(
    {},
    localServiceOptions(register.address, { logLevel: "error" }),
  );
  const recorder = new Recorder(
    connect(wsUrl(proxy.port), { minDelayMs: 400, maxDelayMs: 800 }),
  );
  const { client } = recorder;
  try {
    const first = await recorder.opened();
    await eventually("the client is in group g", async () => {
      return (await sender.api.getClientCountByGroup("g")) === 1;
    });
    // While the connection is down, the client holds what it is given.
    client.addEventListener("close", () => {
      for (const m of numbered("held", 3)) client.send(m);
    }, { once: true });

    const n = 60;
    let sentWhileAway = 0;
    for (let i = 1; i <= n; i++) {
      if (client.state !== "open") sentWhileAway++;
      await Promise.all([
        sender.api.sendToClient(first.clientId, `c${i}`),
        sender.api.sendToUid("u", `u${i}`),
        sender.api.sendToGroup("g", `g${i}`),
      ]);
      if (i === 20) proxy.cutAll(); // no close frame: the client sees 1006
      await sleep(10);
    }
    const second = await recorder.opened(2);
    assert.ok(sentWhileAway > 0, "some were sent while the client was away");
    assert.equal(second.recovered, true);
    assert.equal(second.clientId, first.clientId);
    assert.equal(client.clientId, first.clientId);
    assert.deepEqual(recorder.closes, [
      { code: 1006, reason: "", reconnecting: true },
    ]);
    await recorder.receivedEachOnce(n);
    // What the client held while away reached the service after the
    // reconnect, in order; the service ran onConnect again (resumed).
    await eventually("the held messages arrive", () => {
      return seen.messages.length === 3;
    });
    assert.deepEqual(seen.messages, numbered("held", 3));
    assert.deepEqual(seen.connects, [first.clientId, first.clientId]);
    assert.ok(proxy.accepted >= 2);
  } finally {
    await closeSeen(client, seen);
  }
});

Deno.test("the heartbeat notices a frozen connection, drops it and recovers", async () => {
  await using cluster = await startProxied();
  const { seen, service, proxy } = cluster;
  const recorder = new Recorder(
    connect(wsUrl(proxy.port), {
      minDelayMs: 50,
      maxDelayMs: 200,
      pingIntervalMs: 200,
      pongTimeoutMs: 300,
      connectTimeoutMs: 500,
    }),
  );
  const { client } = recorder;
  try {
    const first = await recorder.opened();
    client.send("before");
    await eventually("the service got it", () => seen.messages.length === 1);
    proxy.freeze();
    const frozen = numbered("f", 20);
    for (const m of frozen) await service.api.sendToClient(first.clientId, m);
    await eventually("the heartbeat drops the socket", () => {
      return recorder.closes.length === 1;
    });
    assert.equal(recorder.closes[0]!.code, 3008);
    assert.equal(recorder.closes[0]!.reconnecting, true);
    assert.match(recorder.closes[0]!.reason, /heartbeat/);
    assert.notEqual(client.state, "open");
    proxy.thaw();
    const second = await recorder.opened(2);
    assert.equal(second.recovered, true);
    assert.equal(second.clientId, first.clientId);
    await recorder.received(frozen.length);
    await sleep(200);
    assert.deepEqual(recorder.messages, frozen);
  } finally {
    await closeSeen(client, seen);
  }
});

Deno.test("after 1012 (a service closing) the client goes to the next URL at once, which takes its session over", async () => {
  await using register = await startLocalRegister();
  const seen = newSeen();
  const first = await startService(
    bindingApp(seen),
    localServiceOptions(register.address, { name: "first" }),
  );
  await using second = await startService(
    bindingApp(seen),
    localServiceOptions(register.address, { name: "second" }),
  );
  await using sender = await startService(
    {},
    localServiceOptions(register.address, { logLevel: "error" }),
  );
  // Backoff long enough that only the 1012 rule explains a quick move.
  const recorder = new Recorder(
    connect([wsUrl(first.port), wsUrl(second.port)], {
      minDelayMs: 200,
      maxDelayMs: 5000,
    }),
  );
  const { client } = recorder;
  let closing: Promise<void> | undefined;
  try {
    const opened = await recorder.opened();
    await eventually("the client is in group g", async () => {
      return (await sender.api.getClientCountByGroup("g")) === 1;
    });
    // A sender keeps sending while the first service closes. A send may
    // reject (IncompleteResultError) while the sender still counts the
    // closing service as a member, though the message reaches the moved
    // session: what counts is what the client receives.
    const n = 60;
    for (let i = 1; i <= n; i++) {
      await Promise.allSettled([
        sender.api.sendToClient(opened.clientId, `c${i}`),
        sender.api.sendToUid("u", `u${i}`),
        sender.api.sendToGroup("g", `g${i}`),
      ]);
      if (i === 15) closing = first.close();
      await sleep(10);
    }
    const moved = await recorder.opened(2);
    assert.equal(recorder.closes[0]?.code, 1012);
    assert.equal(recorder.closes[0]?.reconnecting, true);
    assert.equal(client.url, wsUrl(second.port));
    assert.equal(moved.recovered, true);
    assert.notEqual(moved.clientId, opened.clientId);
    assert.equal(await second.api.isOnline(moved.clientId), true);
    await recorder.receivedEachOnce(n);
  } finally {
    await closeSeen(client, seen);
    await (closing ?? first.close());
  }
});

Deno.test("connect() refuses bad URLs and options at once", () => {
  assert.throws(() => connect([]), TypeError);
  assert.throws(() => connect("ws://127.0.0.1:1/", { minDelayMs: 0 }), {
    name: "RangeError",
    message: /'minDelayMs' must be a positive number: current value is 0/,
  });
  assert.throws(
    () => connect("ws://127.0.0.1:1/", { pongTimeoutMs: Number.NaN }),
    RangeError,
  );
  assert.throws(
    () => connect("ws://127.0.0.1:1/", { minDelayMs: 500, maxDelayMs: 100 }),
    /'maxDelayMs' must be at least 'minDelayMs'/,
  );
});

Deno.test("connections that break right after their welcome back off too", async () => {
  await using cluster = await startProxied();
  const { proxy } = cluster;
  const minDelayMs = 50;
  const maxDelayMs = 400;
  const client = connect(wsUrl(proxy.port), { minDelayMs, maxDelayMs });
  // Every connection is cut as soon as it is open.
  const opens: number[] = [];
  client.addEventListener("open", () => {
    opens.push(performance.now());
    proxy.cutAll();
  });
  try {
    await sleep(2500);
  } finally {
    client.close();
  }
  // Without backoff it would come back every 50 ms: some 40 times.
  assert.ok(opens.length >= 3, `${opens.length} opens`);
  assert.ok(opens.length <= 12, `${opens.length} opens in 2.5 s`);
  const gaps = opens.slice(1).map((at, i) => at - opens[i]!);
  for (const [i, gap] of gaps.slice(3).entries()) {
    assert.ok(gap >= maxDelayMs / 2, `gap ${i + 3} is ${gap} ms`);
  }
});
