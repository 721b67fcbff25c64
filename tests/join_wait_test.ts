// A service that no register answers does not start: startService()
// resolves only once the service has joined (a register sent it the member
// list); until then it accepts no client and onStart does not run; after
// joinTimeoutMs it stops what it started and rejects with `unavailable`,
// naming the registers it tried. The command line exits 1 with that
// message. (A register lost after joining is register_faults_test.ts.)

import assert from "node:assert/strict";
import { type Application, GatewayError, startService } from "../mod.ts";
import {
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { runCapturingStderr, serviceArgs } from "./helpers/processes.ts";
import { eventually } from "./helpers/waits.ts";

const quiet = { logLevel: "error" } as const;

/** A port on 127.0.0.1 that nobody listens on (connections are refused). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  listener.close();
  return listener.addr.port;
}

/** Whether nobody listens on `port` of 127.0.0.1 any more. */
function isFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

/** An app that counts its onStart calls. */
function countingApp(): Application & { starts: number } {
  return {
    starts: 0,
    onStart() {
      this.starts++;
    },
  };
}

function noRegister(tried: string, waitedMs: number): RegExp {
  return new RegExp(
    `^Cannot join the cluster: no register answered within ${waitedMs} ms \\(tried ${
      tried.replaceAll(".", "\\.")
    }\\); check that a register runs at `,
  );
}

Deno.test("startService() rejects when no register answers within joinTimeoutMs", async (t) => {
  await t.step(
    "one register: unavailable, names it, stops what it started",
    async () => {
      const register = `127.0.0.1:${freePort()}`;
      const [port, rpcPort] = [freePort(), freePort()];
      const app = countingApp();
      await assert.rejects(
        startService(
          app,
          localServiceOptions(register, {
            port,
            rpcPort,
            joinTimeoutMs: 300,
            ...quiet,
          }),
        ),
        (error: unknown) => {
          assert.ok(error instanceof GatewayError, String(error));
          assert.equal(error.code, "unavailable");
          assert.match(error.message, noRegister(register, 300));
          return true;
        },
      );
      assert.equal(app.starts, 0, "onStart never ran");
      assert.ok(isFree(port), "the WebSocket port is let go");
      assert.ok(isFree(rpcPort), "the RPC port is let go");
    },
  );

  await t.step("several registers: names every one", async () => {
    const registers = [`127.0.0.1:${freePort()}`, `127.0.0.1:${freePort()}`];
    await assert.rejects(
      startService(
        {},
        localServiceOptions(registers, { joinTimeoutMs: 200, ...quiet }),
      ),
      (error: unknown) =>
        error instanceof GatewayError &&
        noRegister(registers.join(", "), 200).test(error.message) &&
        error.message.includes("one of those addresses"),
    );
  });

  await t.step("an abort while it waits rejects with the reason", async () => {
    const controller = new AbortController();
    const app = countingApp();
    const starting = startService(
      app,
      localServiceOptions(`127.0.0.1:${freePort()}`, {
        signal: controller.signal,
        ...quiet,
      }),
    );
    const reason = new Error("the test gave up");
    setTimeout(() => controller.abort(reason), 100);
    await assert.rejects(starting, (error) => error === reason);
    assert.equal(app.starts, 0);
  });
});

Deno.test("startService() waits for a register that comes late, accepting no client meanwhile", async () => {
  const registerPort = freePort();
  const port = freePort();
  const app = countingApp();
  let resolved = false;
  const starting = startService(
    app,
    localServiceOptions(`127.0.0.1:${registerPort}`, { port, ...quiet }),
  ).then((service) => {
    resolved = true;
    return service;
  });
  await eventually("the service answers /healthz", async () => {
    const response = await fetch(`http://127.0.0.1:${port}/healthz`);
    return (await response.json()).status === "starting";
  });
  const refused = await new Promise<boolean>((resolve) => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/`);
    socket.onopen = () => {
      socket.close();
      resolve(false);
    };
    socket.onerror = () => resolve(true);
  });
  assert.ok(refused, "no client is accepted before the service joined");
  assert.equal(app.starts, 0, "onStart waits for the join");
  assert.equal(resolved, false);

  await using _register = await startLocalRegister({
    port: registerPort,
    ...quiet,
  });
  await using service = await starting;
  assert.equal(app.starts, 1);
  const socket = new WebSocket(`ws://127.0.0.1:${service.port}/`);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = reject;
  });
  const closed = new Promise((resolve) => socket.onclose = resolve);
  socket.close();
  await closed;
});

Deno.test("service.ts exits 1 with the message when no register answers", async () => {
  const register = `127.0.0.1:${freePort()}`;
  const { code, stderr } = await runCapturingStderr(
    "service.ts",
    serviceArgs("tests/fixtures/echo_app.ts", register, [
      "--join-timeout-ms",
      "300",
    ]),
    null,
  );
  assert.equal(code, 1, stderr);
  const line = stderr.split("\n").find((l) => l.startsWith("service: "));
  assert.ok(line !== undefined, stderr);
  assert.match(line.slice("service: ".length), noRegister(register, 300));
  assert.match(line, /or raise joinTimeoutMs \(--join-timeout-ms\)$/);
});
