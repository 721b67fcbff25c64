// A service mounted in the application's own server: `port: false` and
// `service.handler`, in a plain Deno.serve handler and in a Hono app, next
// to a service on its own port in the same cluster. Both mounts go through
// the same steps, and so does a service on its own port, so that the two
// sockets under ClientConnection (ServerWebSocket, StandardSocket) answer
// to one suite: sends across both ways, the origin check, maxMessageBytes
// (1009), the rate limit (1008), /healthz, /metrics and /api/* through the
// handler, and a graceful close with 1001. Then what is particular to a
// mounted socket: maxQueuedMessages, the heartbeat, slow consumers, and a
// service with its own port and the handler at once.

import assert from "node:assert/strict";
import { Hono } from "hono";
import {
  type Application,
  type Service,
  type ServiceOptions,
  startService,
} from "../mod.ts";
import { closeOf, RawClient, TestClient } from "./helpers/clients.ts";
import {
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { scrape } from "./helpers/prometheus.ts";
import { eventually, settles } from "./helpers/waits.ts";

const LIMIT = 4096;
const SECRET = "backend-token";
const ORIGIN = "http://app.example";

/**
 * Binds `?uid=`, joins `?group=`, greets with `id:<clientId>`. A text
 * `to <uid> <text>` goes to that uid, anywhere in the cluster; anything
 * else is echoed as `echo:<text>`. Each onClose is written down.
 */
function testApp(closed: string[]): Application {
  return {
    async onConnect(clientId, { api, request }) {
      const params = new URL(request.url).searchParams;
      const uid = params.get("uid");
      if (uid !== null) await api.bindUid(clientId, uid);
      const group = params.get("group");
      if (group !== null) await api.joinGroup(clientId, group);
      await api.sendToClient(clientId, `id:${clientId}`);
    },
    async onMessage(clientId, message, { api }) {
      const text = typeof message === "string"
        ? message
        : new TextDecoder().decode(message);
      const to = /^to (\S+) (.*)$/s.exec(text);
      if (to !== null) await api.sendToUid(to[1]!, to[2]!);
      else await api.sendToClient(clientId, `echo:${text}`);
    },
    onClose(clientId) {
      closed.push(clientId);
    },
  };
}

/** The server that clients of a service reach, with its port. */
interface ClientServer extends AsyncDisposable {
  readonly port: number;
}

/**
 * Serves `service` at /ws, /healthz, /metrics and /api/* of a server of
 * the application's; the rest is the application's.
 */
type Mount = (service: Service) => ClientServer;

const LISTEN = { hostname: "127.0.0.1", port: 0, onListen() {} };
const APP_PAGE = "the application's own page";

function clientServer(server: Deno.HttpServer<Deno.NetAddr>): ClientServer {
  return {
    port: server.addr.port,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

const MOUNTS: Record<string, Mount> = {
  "Deno.serve": (service) =>
    clientServer(Deno.serve(LISTEN, (request, info) => {
      const path = new URL(request.url).pathname;
      if (
        path === "/ws" || path === "/healthz" || path === "/metrics" ||
        path.startsWith("/api/")
      ) return service.handler(request, info);
      return new Response(APP_PAGE);
    })),
  Hono: (service) => {
    const web = new Hono<{ Bindings: Deno.ServeHandlerInfo }>();
    web.get("/ws", (c) => service.handler(c.req.raw, c.env));
    web.get("/healthz", (c) => service.handler(c.req.raw, c.env));
    web.get("/metrics", (c) => service.handler(c.req.raw, c.env));
    web.post("/api/*", (c) => service.handler(c.req.raw, c.env));
    web.get("/", (c) => c.text(APP_PAGE));
    return clientServer(Deno.serve(LISTEN, web.fetch));
  },
};

/**
 * Where the steps below run: mounted in each server, and, for comparison,
 * on the service's own port (`undefined`), which they describe as well.
 */
const PLACES: [string, Mount | undefined][] = [
  ["mounted in Deno.serve", MOUNTS["Deno.serve"]],
  ["mounted in Hono", MOUNTS.Hono],
  ["on its own port", undefined],
];

/**
 * A register, a service on its own port ("own"), and the service under
 * test ("mounted"): mounted by `mount`, or on its own port without one.
 */
async function testCluster(
  mount: Mount | undefined,
  options: Partial<ServiceOptions> = {},
) {
  const register = await startLocalRegister();
  const own = await startService(
    testApp([]),
    localServiceOptions(register.address, { name: "own" }),
  );
  const closed: string[] = [];
  const mounted = await startService(
    testApp(closed),
    localServiceOptions(register.address, {
      name: "mounted",
      ...(mount === undefined ? {} : { port: false }),
      ...options,
    }),
  );
  const server: ClientServer = mount?.(mounted) ??
    { port: mounted.port, [Symbol.asyncDispose]: () => Promise.resolve() };
  const port = server.port;
  return {
    own,
    mounted,
    /** The port that the service under test's clients connect to. */
    port,
    /** Client ids whose onClose ran on the service under test. */
    closed,
    connect: (query = "") => TestClient.connect(port, `/ws${query}`),
    async [Symbol.asyncDispose]() {
      await mounted.close();
      await server[Symbol.asyncDispose]();
      await own.close();
      await register.close();
    },
  };
}

for (const [where, mount] of PLACES) {
  const isMounted = mount !== undefined;
  Deno.test(`a service ${where} serves its clients as part of the cluster`, async (t) => {
    await using cluster = await testCluster(mount, {
      allowedOrigins: [ORIGIN],
      maxMessageBytes: LIMIT,
      rateLimit: { messagesPerSecond: 1, burst: 5 },
      httpApiSecret: SECRET,
    });
    const { own, mounted, port } = cluster;

    await t.step({
      name: "opens no port of its own",
      ignore: !isMounted,
      async fn() {
        assert.equal(mounted.port, 0);
        assert.equal(mounted.hostname, "");
        const page = await fetch(`http://127.0.0.1:${port}/`);
        assert.equal(await page.text(), APP_PAGE);
      },
    });

    await using m = await cluster.connect("?uid=mia&group=mounted-room");
    await using o = await TestClient.connect(
      own.port,
      "/?uid=otto&group=own-room",
    );

    await t.step("its clients get ids of the mounted service", () => {
      assert.ok(m.id.startsWith(`${mounted.nodeId}.`), m.id);
      assert.ok(o.id.startsWith(`${own.nodeId}.`), o.id);
    });

    await t.step("sends reach the service on its own port", async () => {
      await mounted.api.sendToClient(o.id, "client from mounted");
      await mounted.api.sendToUid("otto", "uid from mounted");
      await mounted.api.sendToGroup("own-room", "group from mounted");
      assert.deepEqual(await o.take(3), [
        "client from mounted",
        "uid from mounted",
        "group from mounted",
      ]);
    });

    await t.step(
      "sends from the service on its own port reach it",
      async () => {
        await own.api.sendToClient(m.id, "client from own");
        await own.api.sendToUid("mia", "uid from own");
        await own.api.sendToGroup("mounted-room", "group from own");
        assert.deepEqual(await m.take(3), [
          "client from own",
          "uid from own",
          "group from own",
        ]);
      },
    );

    await t.step("what its clients send goes across, both ways", async () => {
      m.socket.send("to otto hello from mia");
      assert.equal(await o.next(), "hello from mia");
      o.socket.send("to mia hello from otto");
      assert.equal(await m.next(), "hello from otto");
      assert.equal(await own.api.getUidByClientId(m.id), "mia");
      assert.equal(await own.api.getClientCountByGroup("mounted-room"), 1);
    });

    await t.step("refuses a foreign origin with 403", async () => {
      await assert.rejects(
        RawClient.connect(port, "/ws", { origin: "https://evil.example" }),
        /HTTP\/1\.1 403/,
      );
      (await RawClient.connect(port, "/ws", { origin: ORIGIN })).close();
    });

    await t.step(
      "closes a message over maxMessageBytes with 1009",
      async () => {
        await using client = await cluster.connect();
        client.socket.send("a".repeat(LIMIT - 1));
        assert.equal(await client.next(), `echo:${"a".repeat(LIMIT - 1)}`);
        // Under the limit in UTF-16 units, over it in UTF-8 bytes.
        client.socket.send("é".repeat(LIMIT / 2 + 1));
        const event = await settles("the 1009", client.closed);
        assert.equal(event.code, 1009);
        assert.equal(
          event.reason,
          `message too big: the limit is ${LIMIT} bytes`,
        );
        await using bytes = await cluster.connect();
        bytes.socket.send(new Uint8Array(LIMIT + 1));
        assert.equal((await settles("the 1009", bytes.closed)).code, 1009);
      },
    );

    await t.step("closes a client over its rate limit with 1008", async () => {
      await using client = await cluster.connect();
      // The burst, and one more.
      for (let i = 0; i < 6; i++) client.socket.send(`message ${i}`);
      const event = await settles("the 1008", client.closed);
      assert.equal(event.code, 1008);
      assert.equal(event.reason, "rate limit");
      // Messages that follow the close frame make Deno end the connection
      // at once, maybe before the close frame (docs/mounting.md): the
      // client is closed all the same.
      await using flooder = await cluster.connect();
      for (let i = 0; i < 50; i++) flooder.socket.send(`flood ${i}`);
      await settles("the flooder closed", flooder.closed);
      await eventually(
        "the flooder is gone",
        async () => !await mounted.api.isOnline(flooder.id),
      );
    });

    await t.step(
      "/metrics through the handler counts those closes",
      async () => {
        const metrics = await scrape(`http://127.0.0.1:${port}/metrics`);
        assert.equal(metrics.value("wsgate_message_too_big_closes_total"), 2);
        assert.equal(metrics.value("wsgate_rate_limit_closes_total"), 2);
        await eventually("only m is left", async () => {
          const now = await scrape(`http://127.0.0.1:${port}/metrics`);
          return now.value("wsgate_connections") === 1;
        });
      },
    );

    await t.step("/healthz and /api/* answer through the handler", async () => {
      const health = await fetch(`http://127.0.0.1:${port}/healthz`);
      assert.equal(health.status, 200);
      const report = await health.json();
      assert.equal(report.status, "ready");
      assert.equal(report.name, "mounted");
      const post = (token: string) =>
        fetch(`http://127.0.0.1:${port}/api/sendToClient`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}` },
          body: JSON.stringify({ clientId: o.id, message: "via the HTTP API" }),
        });
      const refused = await post("wrong");
      assert.equal(refused.status, 401);
      await refused.body?.cancel();
      const sent = await post(SECRET);
      assert.equal(sent.status, 200);
      await sent.body?.cancel();
      assert.equal(await o.next(), "via the HTTP API");
    });

    await t.step(
      "close() closes its clients with 1001 and waits for them",
      async () => {
        await using other = await cluster.connect();
        await mounted.close();
        assert.equal((await settles("m closed", m.closed)).code, 1001);
        assert.equal((await settles("other closed", other.closed)).code, 1001);
        // Their onClose ran before close() resolved.
        assert.ok(cluster.closed.includes(m.id), "onClose of m");
        assert.ok(cluster.closed.includes(other.id), "onClose of other");
        // Mounted: the application's server answers for the service.
        await assert.rejects(
          RawClient.connect(port, "/ws"),
          isMounted ? /HTTP\/1\.1 503/ : /refused/i,
        );
        await eventually(
          "the other service no longer counts them",
          async () => (await own.api.getAllClientCount()) === 1,
        );
      },
    );
  });
}

Deno.test("service.handler() closes a client that sends while onMessage is behind, past maxQueuedMessages", async () => {
  const gate = Promise.withResolvers<void>();
  const closed = Promise.withResolvers<void>();
  const received: string[] = [];
  await using register = await startLocalRegister();
  await using service = await startService(
    {
      async onMessage(_clientId, message) {
        received.push(String(message));
        if (message === "block") await gate.promise;
      },
      onClose() {
        closed.resolve();
      },
    },
    localServiceOptions(register.address, {
      port: false,
      maxQueuedMessages: 2,
    }),
  );
  await using server = MOUNTS["Deno.serve"]!(service);
  const client = new TestClient(`ws://127.0.0.1:${server.port}/ws`);
  try {
    await new Promise((resolve) => client.socket.onopen = resolve);
    // "block" runs, "a" and "b" wait: the socket is paused, and "c" that
    // comes meanwhile closes the client.
    for (const text of ["block", "a", "b", "c"]) client.socket.send(text);
    const event = await settles("the 1008", client.closed);
    assert.equal(event.code, 1008);
    assert.equal(event.reason, "too many messages waiting");
  } finally {
    gate.resolve();
    await client.close();
  }
  // onClose runs after the hook that was running: what waited is dropped.
  await settles("onClose", closed.promise);
  assert.deepEqual(received, ["block"]);
});

Deno.test("service.handler() pings a silent client and closes it with 1001 when it does not answer", async () => {
  await using register = await startLocalRegister();
  await using service = await startService(
    testApp([]),
    localServiceOptions(register.address, { port: false, idleTimeoutMs: 400 }),
  );
  await using server = MOUNTS["Deno.serve"]!(service);
  const port = server.port;
  await using answering = await TestClient.connect(port, "/ws");
  await using silent = await RawClient.connect(port, "/ws");
  const frames: number[] = [];
  let close: { code: number; reason: string } | undefined;
  while (close === undefined) {
    const frame = await settles("a frame", silent.nextFrame());
    if (frame === undefined) break;
    frames.push(frame.opcode);
    if (frame.opcode === 0x8) close = closeOf(frame);
  }
  assert.ok(frames.includes(0x9), `a ping first: ${frames}`);
  assert.equal(close?.code, 1001);
  // The client that answers pings is still there, three timeouts later.
  await new Promise((resolve) => setTimeout(resolve, 1200));
  answering.socket.send("still here");
  assert.equal(await answering.next(), "echo:still here");
});

Deno.test("service.handler() closes a client that does not read, past maxBufferedBytes", async () => {
  await using register = await startLocalRegister();
  await using service = await startService(
    testApp([]),
    localServiceOptions(register.address, {
      port: false,
      maxBufferedBytes: 64 * 1024,
      // A close frame stuck behind unread data ends the wait after this.
      shutdownTimeoutMs: 1000,
    }),
  );
  await using server = MOUNTS["Deno.serve"]!(service);
  const port = server.port;
  await using reader = await TestClient.connect(port, "/ws");
  await using _stuck = await RawClient.connect(port, "/ws?uid=stuck");
  let id = "";
  await eventually("the stuck client is bound", async () => {
    id = (await service.api.getClientIdsByUid("stuck"))[0] ?? "";
    return id !== "";
  });
  const chunk = new Uint8Array(64 * 1024);
  for (let i = 0; i < 400 && await service.api.isOnline(id); i++) {
    await service.api.sendToClient(id, chunk);
    // The check looks once the event loop had a turn.
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  assert.equal(await service.api.isOnline(id), false);
  const metrics = await scrape(`http://127.0.0.1:${port}/metrics`);
  assert.equal(metrics.value("wsgate_slow_consumer_closes_total"), 1);
  // Everyone else is served as before.
  reader.socket.send("fine");
  assert.equal(await reader.next(), "echo:fine");
});

Deno.test("service.handler() works beside the service's own port", async () => {
  await using register = await startLocalRegister();
  const service = await startService(
    testApp([]),
    localServiceOptions(register.address),
  );
  await using server = MOUNTS.Hono!(service);
  try {
    await using direct = await TestClient.connect(service.port, "/");
    await using mounted = await TestClient.connect(server.port, "/ws");
    await service.api.sendToAll("to both");
    assert.equal(await direct.next(), "to both");
    assert.equal(await mounted.next(), "to both");
    await service.close();
    assert.equal((await settles("direct closed", direct.closed)).code, 1001);
    assert.equal((await settles("mounted closed", mounted.closed)).code, 1001);
  } finally {
    await service.close();
  }
});
