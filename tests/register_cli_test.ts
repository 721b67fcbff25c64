// The register's command line: where it listens, help, and clear errors.

import assert from "node:assert/strict";
import { GatewayError } from "../mod.ts";
import { startCaller } from "./helpers/local_cluster.ts";
import { captureLogs } from "./helpers/logs.ts";
import { Child, runScript } from "./helpers/processes.ts";

function run(args: string[], env: Record<string, string> = {}) {
  return runScript("register.ts", args, env);
}

Deno.test("register.ts prints one line saying where it listens", async () => {
  const child = await Child.start("register.ts", [
    "--hostname",
    "127.0.0.1",
    "--port",
    "0",
  ]);
  try {
    assert.match(child.first, /^register listening on 127\.0\.0\.1:\d+$/);
    const port = Number(child.first.split(":").at(-1));
    assert.ok(port > 0);
  } finally {
    const status = await child.stop("SIGTERM");
    assert.equal(status.code, 0, "SIGTERM is a clean stop");
  }
});

Deno.test("register.ts --help lists the flags", async () => {
  const { code, stdout } = await run(["--help"]);
  assert.equal(code, 0);
  for (
    const flag of [
      "--hostname",
      "--port",
      "--http-port",
      "--secret-file",
      "--secret",
      "--tls-cert",
      "--tls-key",
      "--tls-ca",
      "--tls-mutual",
      "--log-level",
    ]
  ) {
    assert.ok(stdout.includes(flag), flag);
  }
});

Deno.test("register.ts rejects a bad flag or port with a clear message", async () => {
  const unknown = await run(["--nope"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown flag/);
  const badPort = await run(["--port", "70000"]);
  assert.equal(badPort.code, 2);
  assert.match(badPort.stderr, /port from 0 to 65535/);
  const badEnv = await run([], { WSGATE_REGISTER_PORT: "x" });
  assert.equal(badEnv.code, 2);
  assert.match(badEnv.stderr, /WSGATE_REGISTER_PORT/);
});

Deno.test("register.ts says when its port is in use", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { code, stderr } = await run([
    "--port",
    String(listener.addr.port),
  ]);
  assert.equal(code, 1);
  assert.match(stderr, /port is in use \(pick another with --port\)/);
  const http = await run([
    "--port",
    "0",
    "--http-port",
    String(listener.addr.port),
  ]);
  assert.equal(http.code, 1);
  assert.match(http.stderr, /port is in use \(pick another with --http-port\)/);
});

Deno.test("register.ts --http-port serves /healthz and /metrics", async () => {
  const child = await Child.start(
    "register.ts",
    ["--port", "0", "--log-level", "warn"],
    { env: { WSGATE_REGISTER_HTTP_PORT: "0" } },
  );
  try {
    const second = await child.nextLine();
    assert.match(child.first, /^register listening on 127\.0\.0\.1:\d+$/);
    const health = /health on (http:\S+),/.exec(second!)?.[1];
    const metrics = /metrics on (http:\S+)$/.exec(second!)?.[1];
    assert.ok(health && metrics, `unexpected second line: ${second}`);
    const response = await fetch(health);
    assert.equal(response.status, 200);
    assert.equal((await response.json()).status, "ready");
    const scrape = await fetch(metrics);
    assert.match(await scrape.text(), /^wsgate_register_members 0$/m);
  } finally {
    assert.equal((await child.stop("SIGTERM")).code, 0);
  }
});

Deno.test("register.ts rejects a bad log level", async () => {
  const { code, stderr } = await run(["--port", "0", "--log-level", "loud"]);
  assert.equal(code, 2);
  assert.match(stderr, /logLevel/);
});

Deno.test("register.ts rejects incomplete or unreadable TLS flags", async () => {
  const onlyCa = await run(["--port", "0", "--tls-ca", "ca.pem"]);
  assert.equal(onlyCa.code, 2);
  assert.match(onlyCa.stderr, /without --tls-cert and --tls-key/);
  const onlyCert = await run(["--port", "0", "--tls-cert", "cert.pem"]);
  assert.equal(onlyCert.code, 2);
  assert.match(onlyCert.stderr, /give both --tls-cert and --tls-key/);
  const missing = await run([
    "--port",
    "0",
    "--tls-cert",
    "/nonexistent/cert.pem",
    "--tls-key",
    "/nonexistent/key.pem",
  ]);
  assert.equal(missing.code, 2);
  assert.match(
    missing.stderr,
    /Cannot read --tls-cert "\/nonexistent\/cert.pem"/,
  );
});

Deno.test("register.ts reads its secret from --secret-file, out of sight of ps", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "wsgate-secrets-" });
  const file = async (name: string, text: string) => {
    await Deno.writeTextFile(`${dir}/${name}`, text);
    return `${dir}/${name}`;
  };
  const secret = await file("secret", "register-s3cret\n");
  try {
    for (
      const [how, args, env] of [
        ["--secret-file", ["--secret-file", secret], {}],
        ["$WSGATE_SECRET_FILE", [], { WSGATE_SECRET_FILE: secret }],
      ] as const
    ) {
      await t.step(
        `${how}: the secret without its newline lets services in`,
        async () => {
          const child = await Child.start(
            "register.ts",
            ["--hostname", "127.0.0.1", "--port", "0", ...args],
            { env, captureStderr: true },
          );
          try {
            const address = child.first.split(" ").at(-1)!;
            await using service = await startCaller(address, {
              secret: "register-s3cret",
            });
            const health = await fetch(
              `http://127.0.0.1:${service.port}/healthz`,
            );
            assert.equal((await health.json()).status, "ready");
            // The refused service says so in its log (taken out of the
            // output here).
            using logs = captureLogs(/ ERROR service \S+: /);
            await assert.rejects(
              startCaller(address, { secret: "another-secret" }),
              (error) =>
                error instanceof GatewayError &&
                error.code === "unauthenticated",
            );
            assert.equal(
              logs.matching(/ \S+: register refused this service's secret;/)
                .length,
              1,
              logs.lines.join("\n"),
            );
            const cmdline = await Deno.readTextFile(
              `/proc/${child.pid}/cmdline`,
            );
            assert.doesNotMatch(cmdline, /register-s3cret/);
          } finally {
            assert.equal((await child.stop("SIGTERM")).code, 0);
          }
          // The register let the right secret in, once.
          assert.equal(
            child.stderr.match(/ INFO {2}register: member joined /g)?.length,
            1,
            child.stderr,
          );
        },
      );
    }

    await t.step(
      "an empty or missing file, or a secret given twice, exits with 2",
      async () => {
        const empty = await file("empty", "");
        for (
          const [args, env, pattern] of [
            [
              ["--secret-file", empty],
              {},
              /^register: Cannot read --secret-file ".*\/empty": the file is empty; write the shared secret that services must prove they know into it$/m,
            ],
            [
              ["--secret-file", `${dir}/nonexistent`],
              {},
              /^register: Cannot read --secret-file ".*\/nonexistent": /m,
            ],
            [
              ["--secret-file", secret, "--secret", "register-s3cret"],
              {},
              /^register: Cannot read the shared secret that services must prove they know: both --secret-file and --secret are given/m,
            ],
            [
              ["--secret", "register-s3cret"],
              { WSGATE_SECRET_FILE: secret },
              /both --secret-file and --secret are given \(as flags, or as \$WSGATE_SECRET_FILE and \$WSGATE_SECRET\)/,
            ],
          ] as const
        ) {
          const { code, stderr } = await run(["--port", "0", ...args], env);
          assert.equal(code, 2, stderr);
          assert.match(stderr, pattern);
        }
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
