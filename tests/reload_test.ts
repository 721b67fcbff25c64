// Hot reload: service.reload(app) swaps the hooks while clients stay
// connected, a client's hooks keep running one after another (all of its
// events before the swap on the old code, all after on the new), and
// service.ts reloads its --app module on SIGHUP, keeping the running one
// when the new module is broken.

import assert from "node:assert/strict";
import { join } from "node:path";
import { type Application, GatewayError, startService } from "../mod.ts";
import { TestClient } from "./helpers/clients.ts";
import {
  greeter,
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { captureLogs } from "./helpers/logs.ts";
import { Child, parseReadyLine, serviceArgs } from "./helpers/processes.ts";
import { eventually, settles } from "./helpers/waits.ts";

/** Greets with `id:<clientId>` and echoes text as `<prefix><text>`. */
function echo(prefix: string, events?: string[]): Application {
  return {
    ...greeter,
    onStart() {
      events?.push(`start ${prefix}`);
    },
    onStop() {
      events?.push(`stop ${prefix}`);
    },
    async onMessage(clientId, message, { api }) {
      await api.sendToClient(clientId, `${prefix}${String(message)}`);
    },
    onClose(clientId) {
      events?.push(`close ${prefix} ${clientId}`);
    },
  };
}

Deno.test("service.reload() swaps the hooks while every client stays connected", async () => {
  await using register = await startLocalRegister();
  const events: string[] = [];
  await using service = await startService(
    echo("v0:", events),
    localServiceOptions(register.address, { logLevel: "warn" }),
  );
  const clients = await Promise.all(
    [1, 2, 3].map(() => TestClient.connect(service.port)),
  );
  try {
    for (const version of [1, 2, 3]) {
      await service.reload(echo(`v${version}:`, events));
      for (const [i, client] of clients.entries()) {
        client.socket.send(`m${i}`);
        assert.equal(await client.next(), `v${version}:m${i}`);
      }
    }
    for (const client of clients) {
      assert.equal(client.socket.readyState, WebSocket.OPEN);
      assert.equal(client.pending.length, 0);
    }
    assert.equal(await service.api.getAllClientCount(), 3);
    // Each new application started before the swap; each old one stopped
    // after it.
    assert.deepEqual(events, [
      "start v0:",
      "start v1:",
      "stop v0:",
      "start v2:",
      "stop v1:",
      "start v3:",
      "stop v2:",
    ]);
    // Connected under v0, closed under v3: onClose runs on the new code.
    await clients[0]!.close();
    await eventually("onClose ran", () => events.length === 8);
    assert.equal(events[7], `close v3: ${clients[0]!.id}`);
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
});

Deno.test("service.reload() keeps one client's events in order: every old one before every new one", async (t) => {
  await using register = await startLocalRegister();
  /** Which code handled which message, in the order they were handled. */
  const handled: string[] = [];
  function recorder(version: string, delayMs: number): Application {
    return {
      ...greeter,
      async onMessage(clientId, message, { api }) {
        const text = String(message);
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        handled.push(`${version} ${text}`);
        await api.sendToClient(clientId, `${version} ${text}`);
      },
    };
  }
  const BURST = 200;

  await t.step("a reload asked for while a hook runs", async () => {
    handled.length = 0;
    let reloaded: Promise<void> | undefined;
    const old = recorder("old", 1);
    const next = recorder("new", 0);
    await using service = await startService(
      {
        ...old,
        async onMessage(clientId, message, ctx) {
          // The 50th message asks for the reload, then goes on running
          // (on the old code) for a while.
          if (message === "49") reloaded = service.reload(next);
          await old.onMessage!(clientId, message, ctx);
        },
      },
      localServiceOptions(register.address, { rateLimit: false }),
    );
    await using client = await TestClient.connect(service.port);
    for (let i = 0; i < BURST; i++) client.socket.send(String(i));
    const replies = await client.take(BURST);
    assert.ok(reloaded !== undefined, "the reload was asked for");
    await settles("the reload is done", reloaded);
    assert.deepEqual(replies, handled);
    assert.deepEqual(
      handled,
      Array.from(
        { length: BURST },
        (_, i) => `${i < 50 ? "old" : "new"} ${i}`,
      ),
    );
  });

  await t.step("reloads while two clients send bursts", async () => {
    handled.length = 0;
    await using service = await startService(
      recorder("v0", 1),
      localServiceOptions(register.address, { rateLimit: false }),
    );
    await using a = await TestClient.connect(service.port);
    await using b = await TestClient.connect(service.port);
    for (let i = 0; i < BURST; i++) {
      a.socket.send(`a${i}`);
      b.socket.send(`b${i}`);
      if (i === 60) await service.reload(recorder("v1", 1));
      if (i === 130) await service.reload(recorder("v2", 1));
    }
    for (const [name, client] of [["a", a], ["b", b]] as const) {
      const replies = (await client.take(BURST)).map(String);
      const mine = handled.filter((line) => line.split(" ")[1]![0] === name);
      assert.deepEqual(replies, mine, `${name}: replies as handled`);
      // In the order sent, each by one version, the versions never going
      // back.
      assert.deepEqual(
        replies.map((line) => line.split(" ")[1]),
        Array.from({ length: BURST }, (_, i) => `${name}${i}`),
      );
      const versions = replies.map((line) => Number(line[1]));
      for (let i = 1; i < versions.length; i++) {
        assert.ok(
          versions[i]! >= versions[i - 1]!,
          `${name}: ${replies[i - 1]} then ${replies[i]}`,
        );
      }
      // The sends after the last reload are all handled by v2.
      assert.equal(versions[BURST - 1], 2);
    }
  });
});

Deno.test("service.reload() waits for the hooks running on the old application, at most shutdownTimeoutMs", async (t) => {
  await using register = await startLocalRegister();
  /** An app whose onMessage waits for `gate`. */
  function held(name: string, gate: Promise<void>, events: string[]) {
    return {
      ...greeter,
      async onMessage() {
        events.push(`${name} started`);
        await gate;
        events.push(`${name} done`);
      },
      onStop() {
        events.push(`${name} stopped`);
      },
    } satisfies Application;
  }

  await t.step(
    "the old onStop runs once its running hook settled",
    async () => {
      const events: string[] = [];
      const gate = Promise.withResolvers<void>();
      await using service = await startService(
        held("old", gate.promise, events),
        localServiceOptions(register.address),
      );
      await using client = await TestClient.connect(service.port);
      client.socket.send("x");
      await eventually("the hook runs", () => events.includes("old started"));
      let done = false;
      const reloaded = service.reload(echo("new:")).then(() => done = true);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(done, false, "reload waits for the running hook");
      // The swap is done already: another client's message runs on the
      // new code (this client's next one waits behind its running hook).
      await using other = await TestClient.connect(service.port);
      other.socket.send("y");
      assert.equal(await other.next(), "new:y");
      assert.equal(done, false);
      gate.resolve();
      await settles("the reload is done", reloaded);
      assert.deepEqual(events, ["old started", "old done", "old stopped"]);
    },
  );

  await t.step(
    "a hook that hangs: stopped anyway after shutdownTimeoutMs",
    async () => {
      using logs = captureLogs(
        /WARN .*hooks of the replaced application still run/,
      );
      const events: string[] = [];
      const gate = Promise.withResolvers<void>();
      await using service = await startService(
        held("old", gate.promise, events),
        localServiceOptions(register.address, { shutdownTimeoutMs: 300 }),
      );
      await using client = await TestClient.connect(service.port);
      client.socket.send("x");
      await eventually("the hook runs", () => events.includes("old started"));
      await settles("the reload is done", service.reload(echo("new:")));
      assert.deepEqual(events, ["old started", "old stopped"]);
      assert.equal(logs.lines.length, 1);
      assert.match(logs.lines[0]!, /running=1 waitedMs=300/);
      gate.resolve();
      await eventually("the hook ends", () => events.includes("old done"));
    },
  );
});

Deno.test("service.reload() refuses what it cannot run and keeps the running application", async (t) => {
  await using register = await startLocalRegister();
  const running = echo("v0:");
  await using service = await startService(
    running,
    localServiceOptions(register.address),
  );
  await using client = await TestClient.connect(service.port);
  async function stillV0(): Promise<void> {
    client.socket.send("ping");
    assert.equal(await client.next(), "v0:ping");
  }

  await t.step("not an Application: invalid_argument", async () => {
    for (
      const [value, says] of [
        [null, /current value is null/],
        [42, /current value is number/],
        [[], /current value is an array/],
        [{ onMessage: "hello" }, /onMessage must be a function/],
        [running, /is the one running already/],
      ] as const
    ) {
      await assert.rejects(
        service.reload(value as unknown as Application),
        (error: unknown) => {
          assert.ok(error instanceof GatewayError);
          assert.equal(error.code, "invalid_argument");
          assert.match(error.message, says);
          return true;
        },
      );
    }
    await stillV0();
  });

  await t.step("an onStart that fails: its error, old hooks stay", async () => {
    using logs = captureLogs(/ERROR .*onStart of the new application failed/);
    const failure = new Error("no database");
    await assert.rejects(
      service.reload({
        ...echo("v1:"),
        onStart() {
          throw failure;
        },
      }),
      (error) => error === failure,
    );
    assert.equal(logs.lines.length, 1);
    assert.match(logs.lines[0]!, /no database/);
    await stillV0();
  });

  await t.step("a closing service: closed", async () => {
    const closing = service.close();
    await assert.rejects(service.reload(echo("v2:")), (error: unknown) => {
      assert.ok(error instanceof GatewayError);
      assert.equal(error.code, "closed");
      return true;
    });
    await closing;
    assert.equal((await client.closed).code, 1001);
  });
});

/** An app module with no imports: greets, echoes with `prefix`, serves a page. */
function appModule(prefix: string): string {
  return `export default {
  onConnect(clientId, { api }) {
    return api.sendToClient(clientId, "id:" + clientId);
  },
  onMessage(clientId, message, { api }) {
    return api.sendToClient(clientId, ${JSON.stringify(prefix)} + message);
  },
};
export function fetch() {
  return new Response(${JSON.stringify(`page ${prefix}`)});
}
`;
}

/** Each of `clients` sends a message and gets it back with `prefix`. */
async function answers(clients: TestClient[], prefix: string): Promise<void> {
  for (const [i, client] of clients.entries()) {
    client.socket.send(`m${i}`);
    assert.equal(await client.next(), `${prefix}m${i}`);
  }
}

/** The stderr lines of `child` that match `pattern`. */
function linesOf(child: Child, pattern: RegExp): string[] {
  return child.stderr.split("\n").filter((line) => pattern.test(line));
}

/** Sends SIGHUP and waits for the `count`th line that matches `expected`. */
async function hangUp(
  child: Child,
  expected: RegExp,
  count: number,
): Promise<string> {
  child.signal("SIGHUP");
  await eventually(
    `the service logs ${expected}`,
    () => linesOf(child, expected).length === count,
  );
  return linesOf(child, expected)[count - 1]!;
}

Deno.test("service.ts --app reloads the module on SIGHUP, and keeps the running one when the new one is broken", async () => {
  if (Deno.build.os === "windows") return;
  const dir = await Deno.makeTempDir({ prefix: "wsgate_reload_" });
  const app = join(dir, "app.ts");
  await using register = await startLocalRegister();
  try {
    await Deno.writeTextFile(app, appModule("v1:"));
    // The permissions docs/permissions.md asks for, reading only the folder
    // of the app module.
    await using child = await Child.start(
      "service.ts",
      serviceArgs(app, register.address, ["--log-level", "info"]),
      {
        captureStderr: true,
        permissions: [
          "--allow-net=127.0.0.1",
          "--allow-env=WSGATE_*",
          `--allow-read=${dir}`,
        ],
      },
    );
    const { port } = parseReadyLine(child.first);
    const clients = await Promise.all(
      [1, 2].map(() => TestClient.connect(port)),
    );
    const reloaded = / INFO {2}service \S+: application reloaded reload=\d+/;
    const failed =
      / ERROR service \S+: reload failed; the running application stays /;
    try {
      await answers(clients, "v1:");

      await Deno.writeTextFile(app, appModule("v2:"));
      await hangUp(child, reloaded, 1);
      await answers(clients, "v2:");
      await eventually(
        "fetch answers from the new module",
        async () =>
          await (await fetch(`http://127.0.0.1:${port}/`)).text() ===
            "page v2:",
      );

      await Deno.writeTextFile(app, "export default {;\n");
      const syntax = await hangUp(child, failed, 1);
      assert.match(syntax, /reason=".*Unexpected token/);
      assert.match(syntax, /app\.ts/);
      await answers(clients, "v2:");

      await Deno.writeTextFile(app, "export const app = {};\n");
      const noDefault = await hangUp(child, failed, 2);
      assert.match(
        noDefault,
        /default export must be the Application .*current value is undefined/,
      );
      await answers(clients, "v2:");

      await Deno.writeTextFile(app, appModule("v3:"));
      await hangUp(child, reloaded, 2);
      await answers(clients, "v3:");

      // A burst of hangups: the last reload runs after the last write.
      await Deno.writeTextFile(app, appModule("v4:"));
      child.signal("SIGHUP");
      child.signal("SIGHUP");
      child.signal("SIGHUP");
      await eventually(
        "the burst of hangups reloads",
        () => linesOf(child, reloaded).length >= 3,
      );
      await answers(clients, "v4:");

      for (const client of clients) {
        assert.equal(client.socket.readyState, WebSocket.OPEN);
      }
      assert.equal(linesOf(child, failed).length, 2);
    } finally {
      const status = await settles("the service exits", child.stop());
      assert.equal(status.code, 0);
      for (const client of clients) {
        assert.equal((await client.closed).code, 1001);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
