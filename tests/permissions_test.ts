// The register and services run with the permissions that deno.json's
// `register` and `service` tasks give (the flags docs/permissions.md
// documents), never -A: a cluster of a register, a service.ts process and
// a program of its own that calls startService passes cross-service sends,
// and each permission taken away fails at start with a line that names the
// flag to add, and exit code 2.

import assert from "node:assert/strict";
import { TestClient } from "./helpers/clients.ts";
import { Child, parseReadyLine, serviceArgs } from "./helpers/processes.ts";
import { DENIED_FILE } from "./fixtures/denied_app.ts";

const root = new URL("..", import.meta.url);
const RELAY = "tests/fixtures/relay_app.ts";

/** The `deno run` flags of a task of deno.json, and its script. */
async function taskPermissions(
  name: string,
): Promise<{ command: string; flags: string[]; script: string }> {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("deno.json", root)),
  ) as { tasks: Record<string, string> };
  const command = config.tasks[name];
  assert.ok(command !== undefined, `deno.json has no task "${name}"`);
  // The tasks quote with '...' only (for WSGATE_*, which a shell may glob).
  const words = command.split(/\s+/).map((w) => w.replace(/^'(.*)'$/, "$1"));
  assert.deepEqual(words.slice(0, 2), ["deno", "run"], command);
  const flags = words.slice(2, -1);
  assert.ok(flags.every((f) => f.startsWith("--allow-")), command);
  return { command, flags, script: words.at(-1)! };
}

/** `flags` without the ones that start with `prefix`. */
function without(flags: readonly string[], prefix: string): string[] {
  const kept = flags.filter((flag) => !flag.startsWith(prefix));
  assert.notEqual(kept.length, flags.length, `no ${prefix} in ${flags}`);
  return kept;
}

/** Runs `deno run --no-prompt <permissions> <script> ...args` to its end. */
async function runToEnd(
  permissions: readonly string[],
  script: string,
  args: readonly string[],
): Promise<{ code: number; stderr: string; stdout: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      ...permissions,
      new URL(script, root).pathname,
      ...args,
    ],
    stdin: "null",
    cwd: root.pathname,
  }).output();
  const decoder = new TextDecoder();
  return {
    code,
    stdout: decoder.decode(stdout),
    stderr: decoder.decode(stderr),
  };
}

const register = await taskPermissions("register");
const service = await taskPermissions("service");
/** What a program that calls startService needs (docs/permissions.md). */
const OWN_PROGRAM = ["--allow-net=127.0.0.1"];

Deno.test("the register and services run with the documented permissions, not -A", async (t) => {
  assert.equal(register.script, "register.ts");
  assert.equal(service.script, "service.ts");
  const dir = await Deno.makeTempDir({ prefix: "wsgate-permissions-" });
  try {
    await cluster(t, `${dir}/secret`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The cluster of the test above, with its secret in `secretFile`. */
async function cluster(t: Deno.TestContext, secretFile: string) {
  await Deno.writeTextFile(secretFile, "permissions-test-secret\n");
  // A secret file is the one addition the docs ask for: --allow-read of it.
  const readSecret = `--allow-read=${secretFile}`;
  await using reg = await Child.start("register.ts", [
    "--port",
    "0",
    "--http-port",
    "0",
    "--log-level",
    "warn",
    "--secret-file",
    secretFile,
  ], { permissions: [...register.flags, readSecret] });
  const address = /listening on (\S+)$/.exec(reg.first)?.[1];
  assert.ok(address !== undefined, reg.first);
  const health = /health on (http:\S+)\/healthz,/.exec(
    (await reg.nextLine()) ?? "",
  )?.[1];
  assert.ok(health !== undefined, reg.output.join("\n"));
  await using a = await Child.start(
    "service.ts",
    serviceArgs(RELAY, address, ["--name", "a", "--secret-file", secretFile]),
    { permissions: [...service.flags, readSecret] },
  );
  await using b = await Child.start(
    "tests/fixtures/own_service.ts",
    [address, "permissions-test-secret"],
    { permissions: OWN_PROGRAM },
  );
  const infoA = parseReadyLine(a.first);
  const infoB = parseReadyLine(b.first);
  assert.ok(
    infoA.deliveryPort !== undefined && infoB.deliveryPort !== undefined,
  );

  await t.step("a cross-service send works both ways", async () => {
    await using alice = await TestClient.connect(infoA.port, "/?uid=alice");
    await using bob = await TestClient.connect(infoB.port, "/?uid=bob");
    alice.socket.send("to bob hello from a");
    assert.equal(await alice.next(), "sent");
    assert.equal(await bob.next(), "hello from a");
    bob.socket.send("to alice hello from b");
    assert.equal(await bob.next(), "sent");
    assert.equal(await alice.next(), "hello from b");
  });

  await t.step("health and metrics answer on both kinds of port", async () => {
    for (
      const base of [
        health,
        `http://127.0.0.1:${infoA.port}`,
        `http://127.0.0.1:${infoB.port}`,
      ]
    ) {
      const ready = await fetch(`${base}/healthz`);
      assert.equal((await ready.json()).status, "ready", base);
      const metrics = await fetch(`${base}/metrics`);
      assert.equal(metrics.status, 200, base);
      assert.match(await metrics.text(), /^wsgate_/m);
    }
  });

  await t.step("each stops cleanly on SIGTERM", async () => {
    for (const child of [a, b, reg]) {
      assert.equal((await child.stop()).code, 0);
    }
  });
}

/** The one line a refused start prints, and its exit code. */
async function refusal(
  permissions: readonly string[],
  script: string,
  args: readonly string[],
): Promise<string> {
  const { code, stdout, stderr } = await runToEnd(permissions, script, args);
  assert.equal(code, 2, stderr);
  assert.equal(stdout, "");
  const lines = stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, stderr);
  return lines[0]!;
}

const fixtures = new URL("tests/fixtures", root).pathname;

Deno.test("a missing permission fails at start with the flag to add", async (t) => {
  const registerArgs = ["--port", "0", "--log-level", "warn"];
  const args = serviceArgs(RELAY, "127.0.0.1:1");

  await t.step("register.ts without --allow-net", async () => {
    assert.equal(
      await refusal(without(register.flags, "--allow-net"), "register.ts", [
        ...registerArgs,
        "--http-port",
        "0",
      ]),
      "register: cannot listen on 127.0.0.1:0: Deno needs --allow-net=127.0.0.1:0 (see docs/permissions.md)",
    );
  });

  await t.step(
    "register.ts without --allow-read for its secret file",
    async () => {
      assert.equal(
        await refusal(register.flags, "register.ts", [
          ...registerArgs,
          "--secret-file",
          "/nonexistent/secret",
        ]),
        'register: cannot read --secret-file "/nonexistent/secret": Deno needs --allow-read=/nonexistent/secret (see docs/permissions.md)',
      );
    },
  );

  await t.step("service.ts without --allow-env", async () => {
    assert.match(
      await refusal(without(service.flags, "--allow-env"), "service.ts", args),
      /^service: cannot read \$WSGATE_APP \(nor the other variables of its flags\): Deno needs --allow-env=WSGATE_\* \(see docs\/permissions\.md\)$/,
    );
  });

  await t.step("service.ts without --allow-read for its app", async () => {
    assert.equal(
      await refusal(without(service.flags, "--allow-read"), "service.ts", args),
      `service: cannot read --app "${fixtures}/relay_app.ts": Deno needs --allow-read=${fixtures} (see docs/permissions.md)`,
    );
  });

  await t.step("service.ts with a register outside --allow-net", async () => {
    // Refused before anything is dialed.
    assert.equal(
      await refusal(
        service.flags,
        "service.ts",
        serviceArgs(RELAY, "127.0.0.2:8101"),
      ),
      "service: cannot dial the register at 127.0.0.2:8101: Deno needs --allow-net=127.0.0.2:8101 (see docs/permissions.md)",
    );
  });

  await t.step("service.ts whose app reads what it may not", async () => {
    await using reg = await Child.start("register.ts", registerArgs, {
      permissions: register.flags,
    });
    const address = /listening on (\S+)$/.exec(reg.first)![1]!;
    const { code, stderr } = await runToEnd(
      service.flags,
      "service.ts",
      serviceArgs("tests/fixtures/denied_app.ts", address),
    );
    assert.equal(code, 2, stderr);
    const lines = stderr.trimEnd().split("\n");
    // The service logs the failed hook, then the command line says why.
    assert.match(lines[0]!, / ERROR service \S+: onStart failed; closing /);
    assert.equal(
      lines.at(-1),
      `service: Requires read access to "${DENIED_FILE}": Deno needs --allow-read=${DENIED_FILE} (see docs/permissions.md)`,
    );
  });
});

Deno.test("docs/permissions.md shows the tasks' permissions as they are", async () => {
  const doc = await Deno.readTextFile(new URL("docs/permissions.md", root));
  for (const name of ["register", "service", "start", "demo"]) {
    const { command } = await taskPermissions(name);
    assert.ok(
      doc.includes(command),
      `docs/permissions.md does not show the ${name} task: ${command}`,
    );
  }
  assert.ok(doc.includes(OWN_PROGRAM.join(" ")));
});
