// The chat service's command line (examples/chat/service.ts): flags with
// environment fallbacks, help, clear errors, and quiet logs at info.

import assert from "node:assert/strict";
import { Child, runScript, startRegisterProcess } from "./_cluster.ts";

const script = "examples/chat/service.ts";

function run(args: string[], env: Record<string, string> = {}) {
  return runScript(script, args, env);
}

/** A running chat service with its stdout's first line and its stderr. */
async function start(args: string[], env: Record<string, string> = {}) {
  const child = await Child.start(script, args, { captureStderr: true, env });
  return {
    first: child.first,
    port: Number(/:(\d+)\/ /.exec(child.first)?.[1]),
    /** SIGTERM; resolves with the exit code and everything on stderr. */
    async stop(): Promise<{ code: number; stderr: string }> {
      const { code } = await child.stop("SIGTERM");
      return { code, stderr: child.stderr };
    },
  };
}

/** Connects a page-like client and says `count` things in #lobby. */
async function chat(port: number, count: number): Promise<void> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/?nick=tester`);
  const events: { type: string; text?: string }[] = [];
  let wake = () => {};
  socket.onmessage = (e) => {
    events.push(JSON.parse(e.data));
    wake();
  };
  async function until(check: () => boolean): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!check()) {
      if (Date.now() > deadline) throw new Error("no answer within 10 s");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 200);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
  await until(() => events.some((e) => e.type === "welcome"));
  socket.send(JSON.stringify({ type: "join", room: "lobby" }));
  await until(() => events.some((e) => e.type === "members"));
  for (let i = 0; i < count; i++) {
    socket.send(JSON.stringify({ type: "say", room: "lobby", text: `m${i}` }));
  }
  await until(() => events.some((e) => e.text === `m${count - 1}`));
  socket.close();
  await new Promise((resolve) => socket.onclose = resolve);
}

Deno.test("chat service --help lists every flag with its variable", async () => {
  const { code, stdout } = await run(["--help"]);
  assert.equal(code, 0);
  for (
    const [flag, env] of [
      ["--register", "WSGATE_REGISTER"],
      ["--port", "WSGATE_PORT"],
      ["--rpc-port", "WSGATE_RPC_PORT"],
      ["--delivery-port", "WSGATE_DELIVERY_PORT"],
      ["--lan-ip", "WSGATE_LAN_IP"],
      ["--secret", "WSGATE_SECRET"],
      ["--http-api-secret", "WSGATE_HTTP_API_SECRET"],
      ["--log-level", "WSGATE_LOG_LEVEL"],
      ["--name", "WSGATE_SERVICE_NAME"],
    ]
  ) {
    assert.match(stdout, new RegExp(`${flag} .*\\[env ${env}\\]`));
  }
});

Deno.test("chat service rejects bad flags and values with exit code 2", async () => {
  const unknown = await run(["--nope"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown flag "--nope"|"--nope": unknown flag/);
  const badEnv = await run([], { WSGATE_PORT: "x" });
  assert.equal(badEnv.code, 2);
  assert.match(badEnv.stderr, /\$WSGATE_PORT "x"/);
  const badLevel = await run(["--log-level", "loud", "--port", "0"]);
  assert.equal(badLevel.code, 2);
  assert.match(badLevel.stderr, /logLevel/);
});

Deno.test("chat service says when its port is in use", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { code, stderr } = await run([
    "--hostname",
    "127.0.0.1",
    "--port",
    String(listener.addr.port),
    "--rpc-port",
    "0",
  ]);
  assert.equal(code, 1);
  assert.match(stderr, /port is in use \(pick another with --port\)/);
});

Deno.test("chat service reads the environment, serves its page, and logs quietly at info", async (t) => {
  const register = await startRegisterProcess();
  try {
    await t.step("info: a few lines, none per message", async () => {
      const service = await start([], {
        WSGATE_REGISTER: register.address,
        WSGATE_HOSTNAME: "127.0.0.1",
        WSGATE_PORT: "0",
        WSGATE_RPC_PORT: "0",
        WSGATE_SERVICE_NAME: "Z",
      });
      let stopped;
      try {
        assert.match(
          service.first,
          /^chat service Z on http:\/\/127\.0\.0\.1:\d+\/ /,
        );
        const page = await fetch(`http://127.0.0.1:${service.port}/`);
        assert.equal(page.status, 200);
        assert.match(await page.text(), /<title>wsgate chat<\/title>/);
        const health = await fetch(`http://127.0.0.1:${service.port}/healthz`);
        assert.equal(health.status, 200);
        await health.body?.cancel();
        await chat(service.port, 30);
      } finally {
        stopped = await service.stop();
      }
      assert.equal(stopped.code, 0, "SIGTERM is a clean stop");
      const lines = stopped.stderr.trim().split("\n");
      assert.ok(
        lines.length <= 4,
        `at most 4 lines at info, got:\n${stopped.stderr}`,
      );
      for (const line of lines) assert.match(line, / (INFO|WARN) /);
      // Chat texts are the words m0..m29; `\b` keeps the random node id in
      // every line (which may hold e.g. "m2" inside it) from matching.
      assert.doesNotMatch(stopped.stderr, /\bm\d+\b|message|client/);
    });

    const flags = [
      "--register",
      register.address,
      "--hostname",
      "127.0.0.1",
      "--port",
      "0",
      "--rpc-port",
      "0",
    ];

    await t.step("debug: a line per client event", async () => {
      const service = await start(flags, { WSGATE_LOG_LEVEL: "debug" });
      await chat(service.port, 3);
      const { code, stderr } = await service.stop();
      assert.equal(code, 0);
      assert.match(stderr, / DEBUG .*client connected/);
      assert.match(stderr, / DEBUG .*client closed/);
    });

    await t.step("warn: silent when all is well", async () => {
      const service = await start([...flags, "--log-level", "warn"]);
      await chat(service.port, 3);
      const { code, stderr } = await service.stop();
      assert.equal(code, 0);
      assert.equal(stderr, "");
    });
  } finally {
    await register.child.stop();
  }
});
