// The service's command line (service.ts, here with the chat as its app):
// flags with environment fallbacks, help, clear errors, and quiet logs at
// info.

import assert from "node:assert/strict";
import {
  Child,
  parseReadyLine,
  runScript,
  startRegisterProcess,
} from "./helpers/processes.ts";

const script = "service.ts";
const CHAT = ["--app", "examples/chat/app.ts"];

function run(args: string[], env: Record<string, string> = {}) {
  return runScript(script, args, env);
}

/**
 * A running chat service with its stdout's first line and its stderr; the
 * app comes from `--app`, or from `$WSGATE_APP` when `env` names it.
 */
async function start(args: string[], env: Record<string, string> = {}) {
  const app = env.WSGATE_APP === undefined ? CHAT : [];
  const child = await Child.start(script, [...app, ...args], {
    captureStderr: true,
    env,
  });
  return {
    first: child.first,
    pid: child.pid,
    port: parseReadyLine(child.first).port,
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

Deno.test("service.ts --help lists every flag with its variable", async () => {
  const { code, stdout } = await run(["--help"]);
  assert.equal(code, 0);
  for (
    const [flag, env] of [
      ["--app", "WSGATE_APP"],
      ["--register", "WSGATE_REGISTER"],
      ["--name", "WSGATE_SERVICE_NAME"],
      ["--hostname", "WSGATE_HOSTNAME"],
      ["--port", "WSGATE_PORT"],
      ["--rpc-port", "WSGATE_RPC_PORT"],
      ["--delivery-port", "WSGATE_DELIVERY_PORT"],
      ["--lan-ip", "WSGATE_LAN_IP"],
      ["--rpc-hostname", "WSGATE_RPC_HOSTNAME"],
      ["--secret-file", "WSGATE_SECRET_FILE"],
      ["--secret", "WSGATE_SECRET"],
      ["--tls-cert", "WSGATE_TLS_CERT"],
      ["--tls-mutual", "WSGATE_TLS_MUTUAL"],
      ["--http-api-secret-file", "WSGATE_HTTP_API_SECRET_FILE"],
      ["--http-api-secret", "WSGATE_HTTP_API_SECRET"],
      ["--allowed-origins", "WSGATE_ALLOWED_ORIGINS"],
      ["--deadline-ms", "WSGATE_DEADLINE_MS"],
      ["--idle-timeout-ms", "WSGATE_IDLE_TIMEOUT_MS"],
      ["--max-message-bytes", "WSGATE_MAX_MESSAGE_BYTES"],
      ["--shutdown-timeout-ms", "WSGATE_SHUTDOWN_TIMEOUT_MS"],
      ["--log-level", "WSGATE_LOG_LEVEL"],
    ]
  ) {
    assert.match(stdout, new RegExp(`${flag} .*\\[env ${env}\\]`));
  }
});

Deno.test("service.ts rejects bad flags, values and app modules with exit code 2", async () => {
  const unknown = await run([...CHAT, "--nope"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown flag "--nope"|"--nope": unknown flag/);
  const badEnv = await run(CHAT, { WSGATE_PORT: "x" });
  assert.equal(badEnv.code, 2);
  assert.match(badEnv.stderr, /\$WSGATE_PORT "x"/);
  const badLevel = await run([...CHAT, "--log-level", "loud", "--port", "0"]);
  assert.equal(badLevel.code, 2);
  assert.match(badLevel.stderr, /logLevel/);
  const noApp = await run([]);
  assert.equal(noApp.code, 2);
  assert.match(noApp.stderr, /--app is required/);
  const missing = await run(["--app", "tests/fixtures/no_such_app.ts"]);
  assert.equal(missing.code, 2);
  assert.match(
    missing.stderr,
    /Cannot load --app "tests\/fixtures\/no_such_app\.ts"/,
  );
  const notAnApp = await run(["--app", "tests/helpers/lines.ts"]);
  assert.equal(notAnApp.code, 2);
  assert.match(notAnApp.stderr, /its default export must be the Application/);
});

Deno.test("service.ts says when its port is in use", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { code, stderr } = await run([
    ...CHAT,
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

Deno.test("service.ts reads the environment, serves the app's page, and logs quietly at info", async (t) => {
  const register = await startRegisterProcess();
  try {
    await t.step("info: a few lines, none per message", async () => {
      const service = await start([], {
        WSGATE_APP: "examples/chat/app.ts",
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
          /^service Z on http:\/\/127\.0\.0\.1:\d+\/ /,
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

Deno.test("service.ts reads its secrets from files, out of sight of ps", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "wsgate-secrets-" });
  const file = async (name: string, text: string) => {
    await Deno.writeTextFile(`${dir}/${name}`, text);
    return `${dir}/${name}`;
  };
  // The register's file has no newline, the service's has one: they agree
  // only if the service drops it.
  const registerSecret = await file("register-secret", "cluster-s3cret");
  const secret = await file("secret", "cluster-s3cret\n");
  const token = await file("token", "backend-t0ken\r\n");
  const register = await startRegisterProcess([
    "--secret-file",
    registerSecret,
  ]);
  try {
    await t.step(
      "--secret-file joins, $WSGATE_HTTP_API_SECRET_FILE turns the HTTP API on",
      async () => {
        const service = await start([
          "--register",
          register.address,
          "--hostname",
          "127.0.0.1",
          "--port",
          "0",
          "--rpc-port",
          "0",
          "--log-level",
          "warn",
          "--secret-file",
          secret,
        ], { WSGATE_HTTP_API_SECRET_FILE: token });
        let stopped;
        try {
          const base = `http://127.0.0.1:${service.port}`;
          const health = await fetch(`${base}/healthz`);
          assert.equal((await health.json()).status, "ready");
          const call = (bearer: string) =>
            fetch(`${base}/api/getAllClientCount`, {
              method: "POST",
              headers: {
                authorization: `Bearer ${bearer}`,
                "content-type": "application/json",
              },
              body: "{}",
            });
          const ok = await call("backend-t0ken");
          assert.equal(ok.status, 200);
          assert.deepEqual(await ok.json(), { result: 0 });
          const wrong = await call("cluster-s3cret");
          assert.equal(wrong.status, 401);
          await wrong.body?.cancel();
          const cmdline = await Deno.readTextFile(
            `/proc/${service.pid}/cmdline`,
          );
          assert.match(cmdline, /--secret-file/);
          assert.doesNotMatch(cmdline, /cluster-s3cret|backend-t0ken/);
        } finally {
          stopped = await service.stop();
        }
        assert.equal(stopped.code, 0);
        assert.equal(stopped.stderr, "");
      },
    );

    const flags = [...CHAT, "--register", register.address, "--port", "0"];
    await t.step(
      "an empty or missing file, or a secret given twice, exits with 2",
      async () => {
        const empty = await file("empty", "");
        const newline = await file("newline", "\n");
        for (
          const [args, env, pattern] of [
            [
              ["--secret-file", empty],
              {},
              /^service: Cannot read --secret-file ".*\/empty": the file is empty; write the shared secret of the cluster into it$/m,
            ],
            [
              [],
              { WSGATE_HTTP_API_SECRET_FILE: newline },
              /Cannot read --http-api-secret-file ".*\/newline": the file is empty/,
            ],
            [
              ["--secret-file", `${dir}/nonexistent`],
              {},
              /Cannot read --secret-file ".*\/nonexistent": /,
            ],
            [
              ["--secret-file", secret, "--secret", "cluster-s3cret"],
              {},
              /Cannot read the shared secret of the cluster: both --secret-file and --secret are given \(as flags, or as \$WSGATE_SECRET_FILE and \$WSGATE_SECRET\); give only one, preferably --secret-file/,
            ],
            [
              ["--secret-file", secret],
              { WSGATE_SECRET: "cluster-s3cret" },
              /both --secret-file and --secret are given/,
            ],
            [
              ["--http-api-secret", "t"],
              { WSGATE_HTTP_API_SECRET_FILE: token },
              /both --http-api-secret-file and --http-api-secret are given/,
            ],
          ] as const
        ) {
          const { code, stderr } = await run([...flags, ...args], env);
          assert.equal(code, 2, stderr);
          assert.match(stderr, pattern);
        }
      },
    );
  } finally {
    await register.child.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
