// A server that cannot listen says why in terms of what to change:
// startService() and startRegister() reject with a GatewayError naming the
// option (`unavailable` for a port in use, `invalid_argument` for an
// address that is not this machine's), and the command lines print the
// same sentence with the flag. Ports in use are ports this test holds on
// 127.0.0.1; the foreign address (192.0.2.1, TEST-NET-1) is only bound to,
// never sent to.

import assert from "node:assert/strict";
import {
  GatewayError,
  type GatewayErrorCode,
  startRegister,
  startService,
} from "../mod.ts";
import {
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { runCapturingStderr, serviceArgs } from "./helpers/processes.ts";

/** Not an address of this machine: binding to it fails, nothing is sent. */
const FOREIGN = "192.0.2.1";

/** A port this test holds on 127.0.0.1 until disposed. */
function holdPort(): Deno.TcpListener & { readonly port: number } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return Object.assign(listener, { port: listener.addr.port });
}

/** Whether a port on 127.0.0.1 is free again (what failed let it go). */
function isFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

/** Asserts that `start` rejects with `code` and exactly `message`. */
async function rejectsWith(
  start: Promise<unknown>,
  code: GatewayErrorCode,
  message: string,
): Promise<void> {
  await assert.rejects(start, (error: unknown) => {
    assert.ok(error instanceof GatewayError, String(error));
    assert.equal(error.code, code);
    assert.equal(error.message, message);
    return true;
  });
}

function inUse(address: string, option: string): string {
  return `Cannot listen on ${address}: the port is in use (pick another with ${option})`;
}

function notLocal(address: string, option: string): string {
  return `Cannot listen on ${address}: ${FOREIGN} is not an address of this machine (set ${option} to one of its addresses, "127.0.0.1" for this machine only, or "0.0.0.0" for every interface)`;
}

Deno.test("startService() says which option to change when it cannot listen", async (t) => {
  await using register = await startLocalRegister({ logLevel: "error" });
  const base = localServiceOptions(register.address, { logLevel: "error" });

  for (const option of ["port", "rpcPort", "deliveryPort"] as const) {
    await t.step(`${option} in use`, async () => {
      using held = holdPort();
      // The servers that did listen before the failure are closed again.
      const others = [holdPort(), holdPort()].map((l) => {
        l.close();
        return l.port;
      });
      const ports = {
        port: others[0]!,
        rpcPort: others[1]!,
        deliveryPort: 0,
        [option]: held.port,
      };
      await rejectsWith(
        startService({}, { ...base, ...ports }),
        "unavailable",
        inUse(`127.0.0.1:${held.port}`, `the '${option}' option`),
      );
      for (const port of others) {
        assert.ok(isFree(port), `port ${port} was let go`);
      }
    });
  }

  await t.step("a hostname that is not this machine's", async () => {
    await rejectsWith(
      startService({}, { ...base, hostname: FOREIGN, port: 0 }),
      "invalid_argument",
      notLocal(`${FOREIGN}:0`, "the 'hostname' option"),
    );
  });

  await t.step("an rpcHostname that is not this machine's", async () => {
    await rejectsWith(
      startService({}, { ...base, rpcHostname: FOREIGN }),
      "invalid_argument",
      notLocal(`${FOREIGN}:0`, "the 'rpcHostname' option"),
    );
    await rejectsWith(
      startService({}, { ...base, rpcHostname: FOREIGN, deliveryPort: false }),
      "invalid_argument",
      notLocal(`${FOREIGN}:0`, "the 'rpcHostname' option"),
    );
  });
});

Deno.test("startRegister() says which option to change when it cannot listen", async (t) => {
  const options = { hostname: "127.0.0.1", logLevel: "error" } as const;
  await t.step("port in use", async () => {
    using held = holdPort();
    await rejectsWith(
      startRegister({ ...options, port: held.port }),
      "unavailable",
      inUse(`127.0.0.1:${held.port}`, "the 'port' option"),
    );
  });
  await t.step("httpPort in use", async () => {
    using held = holdPort();
    await rejectsWith(
      startRegister({ ...options, port: 0, httpPort: held.port }),
      "unavailable",
      inUse(`127.0.0.1:${held.port}`, "the 'httpPort' option"),
    );
  });
  await t.step("a hostname that is not this machine's", async () => {
    await rejectsWith(
      startRegister({ ...options, hostname: FOREIGN, port: 0, secret: "s" }),
      "invalid_argument",
      notLocal(`${FOREIGN}:0`, "the 'hostname' option"),
    );
  });
});

Deno.test("register.ts and service.ts print the same sentence with the flag", async (t) => {
  await t.step("register.ts --hostname", async () => {
    const { code, stderr } = await runCapturingStderr("register.ts", [
      "--hostname",
      FOREIGN,
      "--port",
      "0",
      "--secret",
      "s",
    ], null);
    assert.equal(code, 1, stderr);
    assert.match(stderr, /^register: /m);
    assert.ok(
      stderr.includes(`register: ${notLocal(`${FOREIGN}:0`, "--hostname")}`),
      stderr,
    );
  });
  await t.step("service.ts --rpc-hostname and --rpc-port", async () => {
    const foreign = await runCapturingStderr(
      "service.ts",
      serviceArgs("tests/fixtures/echo_app.ts", "127.0.0.1:1", [
        "--rpc-hostname",
        FOREIGN,
        "--secret",
        "s",
      ]),
      null,
    );
    assert.equal(foreign.code, 1, foreign.stderr);
    assert.ok(
      foreign.stderr.includes(
        `service: ${notLocal(`${FOREIGN}:0`, "--rpc-hostname")}`,
      ),
      foreign.stderr,
    );
    using held = holdPort();
    const taken = await runCapturingStderr(
      "service.ts",
      serviceArgs("tests/fixtures/echo_app.ts", "127.0.0.1:1", [
        "--rpc-port",
        String(held.port),
      ]),
      null,
    );
    assert.equal(taken.code, 1, taken.stderr);
    assert.ok(
      taken.stderr.includes(
        `service: ${inUse(`127.0.0.1:${held.port}`, "--rpc-port")}`,
      ),
      taken.stderr,
    );
  });
});
