// Graceful shutdown: close(), an AbortSignal, SIGINT and SIGTERM leave the
// register, stop accepting, deliver what is queued, close clients with 1001,
// run onClose and then onStop while peers are still reachable, and stop the
// RPC server last, all bounded by shutdownTimeoutMs. onStart runs before any
// client is accepted.

import assert from "node:assert/strict";
import { type Application, startService } from "../mod.ts";
import { RawClient, TestClient } from "./helpers/clients.ts";
import {
  greeter,
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import {
  Child,
  parseReadyLine,
  serviceArgs,
  startLabService,
  startRegisterProcess,
} from "./helpers/processes.ts";
import { captureLogs } from "./helpers/logs.ts";
import { eventually, settles } from "./helpers/waits.ts";

Deno.test("a service that closes delivers what is queued, then closes clients with 1001, onClose, onStop", async () => {
  const register = await startRegisterProcess();
  const leaving = await startLabService(register.address, [
    "--log-level",
    "debug",
  ], { captureStderr: true, env: { LAB_ANNOUNCE: "1" } });
  const staying = await startLabService(register.address);
  try {
    await using observer = await TestClient.connect(staying.info.port);
    await using a = await TestClient.connect(leaving.info.port);
    await using b = await TestClient.connect(leaving.info.port);
    // b asks for a burst of 4 MiB to itself and the service's close at once.
    const count = 256;
    b.socket.send(`!burst-and-stop ${count} 16384`);
    const status = await settles("the service exits", leaving.child.status);
    assert.equal(status.code, 0);

    // Everything queued for b arrived before its close frame.
    const closeB = await settles("b is closed", b.closed);
    assert.equal(closeB.code, 1001);
    assert.equal(closeB.reason, "service is going away");
    const burst = await b.take(count);
    burst.forEach((m, i) => {
      assert.ok(m instanceof Uint8Array && m.length === 16384, `message ${i}`);
      assert.equal(m[0], i & 0xff);
    });
    assert.equal((await settles("a is closed", a.closed)).code, 1001);

    // onClose of both clients, then onStop, all reached a client of another
    // service: peers and the RPC server were still up.
    const seen = await observer.take(3);
    assert.deepEqual(
      seen.slice(0, 2).sort(),
      [`left:${a.id}`, `left:${b.id}`].sort(),
    );
    assert.equal(seen[2], `stopping:${leaving.info.nodeId}`);

    // In this order: leave, close clients, onStop, drain, servers.
    const steps = [
      "closing: leaving the registers",
      "closing: closing the clients clients=2",
      "closing: running onStop",
      "closing: waiting for deliveries to peers",
      "closing: stopping the servers",
      "service stopped",
    ];
    const stderr = leaving.child.stderr;
    const at = steps.map((step) => stderr.indexOf(step));
    assert.ok(at.every((i) => i >= 0), stderr);
    assert.deepEqual([...at].sort((x, y) => x - y), at);
    await leaving.child.stop();
    assert.deepEqual(leaving.child.output, [
      "onStop",
      `service ${leaving.info.name} stopped`,
    ]);
    // No line at level WARN or ERROR (a DEBUG line may name an error, such
    // as the HTTP/2 session a peer closed when this service left it).
    assert.doesNotMatch(stderr, /Z (WARN|ERROR) /);

    // The others forgot it.
    observer.socket.send("!count nobody");
    assert.equal(await observer.next(), "count:0");
  } finally {
    await leaving.child.stop("SIGKILL");
    await staying.child.stop();
    await register.child.stop();
  }
});

Deno.test("SIGTERM and SIGINT stop service.ts gracefully, with the lab and the example app", async (t) => {
  const register = await startRegisterProcess();
  try {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      await t.step(`the lab fixture on ${signal}`, async () => {
        const service = await startLabService(register.address);
        const client = await TestClient.connect(service.info.port);
        const status = await service.child.stop(signal);
        assert.equal(status.code, 0);
        assert.equal((await settles("closed", client.closed)).code, 1001);
        assert.deepEqual(service.child.output, [
          "onStop",
          `service ${service.info.name} stopped`,
        ]);
      });
      await t.step(`examples/default/app.ts on ${signal}`, async () => {
        const child = await Child.start(
          "service.ts",
          serviceArgs("examples/default/app.ts", register.address, [
            "--log-level",
            "info",
          ]),
          { captureStderr: true },
        );
        const { port } = parseReadyLine(child.first);
        await using client = new TestClient(`ws://127.0.0.1:${port}/`);
        assert.match(String(await client.next()), /^welcome, you are /);
        const status = await child.stop(signal);
        assert.equal(status.code, 0);
        assert.equal((await settles("closed", client.closed)).code, 1001);
        assert.match(child.stderr, /service stopped/);
      });
    }
  } finally {
    await register.child.stop();
  }
});

Deno.test("shutdownTimeoutMs bounds close() when clients or hooks never finish", async () => {
  const register = await startRegisterProcess();
  const service = await startLabService(register.address, [
    "--shutdown-timeout-ms",
    "800",
  ], { captureStderr: true });
  try {
    // One client never answers the close frame, another's onClose hangs.
    await using _stuck = await RawClient.connect(service.info.port);
    await using _hang = await TestClient.connect(
      service.info.port,
      "/?throw=hang",
    );
    const status = await settles(
      "the service exits",
      service.child.stop("SIGTERM"),
      15_000,
    );
    assert.equal(status.code, 0);
    assert.match(
      service.child.stderr,
      /some clients did not finish closing in time clients=2 shutdownTimeoutMs=800/,
    );
  } finally {
    await service.child.stop("SIGKILL");
    await register.child.stop();
  }
});

Deno.test("onStart runs before clients are accepted; onStop after they are gone", async (t) => {
  await using register = await startLocalRegister();
  const options = localServiceOptions(register.address);

  await t.step(
    "clients wait for onStart; a failing onStart fails the start",
    async () => {
      const port = freePort();
      let release!: () => void;
      const events: string[] = [];
      const app: Application = {
        async onStart({ api }) {
          events.push(`start ${await api.getAllClientCount()}`);
          await new Promise<void>((resolve) => release = resolve);
          events.push("started");
        },
        onConnect() {
          events.push("connect");
        },
      };
      const starting = startService(app, { ...options, port });
      await eventually("onStart runs", () => events.length === 1);
      // Listening already, but refusing clients until onStart is done.
      await assert.rejects(RawClient.connect(port), /HTTP\/1.1 503/);
      release();
      await using service = await starting;
      await using client = await RawClient.connect(port);
      await eventually("the client connects", () => events.includes("connect"));
      assert.deepEqual(events, ["start 0", "started", "connect"]);
      client.close();
      await service.close();

      const failure = new Error("no database");
      using logs = captureLogs(/ ERROR service \S+: onStart failed; closing /);
      await assert.rejects(
        startService({
          onStart() {
            throw failure;
          },
        }, { ...options, port }),
        (error) => error === failure,
      );
      assert.equal(logs.lines.length, 1, logs.lines.join("\n"));
      assert.match(logs.lines[0]!, /error="Error: no database/);
      // It closed: the port is free again.
      Deno.listen({ hostname: "127.0.0.1", port }).close();
    },
  );

  await t.step(
    "an AbortSignal closes: onClose of every client, then onStop with a working Api",
    async () => {
      const events: string[] = [];
      await using peer = await startService(greeter, options);
      const controller = new AbortController();
      const service = await startService({
        ...greeter,
        async onClose(clientId) {
          await new Promise((resolve) => setTimeout(resolve, 20));
          events.push(`close ${clientId}`);
        },
        async onStop({ api }) {
          events.push("stop");
          await api.sendToAll("goodbye from onStop");
        },
      }, { ...options, signal: controller.signal });
      await using watcher = await TestClient.connect(peer.port);
      const clients = [
        await TestClient.connect(service.port),
        await TestClient.connect(service.port),
      ];
      controller.abort();
      await service.close(); // the same close as the signal's
      for (const client of clients) {
        assert.equal((await settles("closed", client.closed)).code, 1001);
      }
      assert.deepEqual(
        events,
        [...clients.map((c) => `close ${c.id}`).sort(), "stop"],
      );
      assert.equal(await watcher.next(), "goodbye from onStop");
    },
  );

  await t.step("an aborted signal refuses to start", async () => {
    const reason = new Error("not now");
    await assert.rejects(
      startService({}, { ...options, signal: AbortSignal.abort(reason) }),
      (error) => error === reason,
    );
  });
});

/** A port that was free a moment ago. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}
