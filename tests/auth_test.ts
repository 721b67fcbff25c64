// The shared secret between nodes: every register and service RPC needs
// it, a call without it or with a wrong one is refused with
// UNAUTHENTICATED and changes nothing, a service with a wrong secret cannot
// join, and listening beyond loopback without a secret logs a warning.

import assert from "node:assert/strict";
import type { DescMethod } from "@bufbuild/protobuf";
import { GatewayError } from "../mod.ts";
import { GatewayService } from "../proto/gen/websocket/v1/gateway_pb.ts";
import { RegisterService } from "../proto/gen/websocket/v1/register_pb.ts";
import { TestClient } from "./helpers/clients.ts";
import { startCaller } from "./helpers/local_cluster.ts";
import { captureLogs } from "./helpers/logs.ts";
import {
  runCapturingStderr,
  serviceArgs,
  startRegisterProcess,
  startServiceProcess,
} from "./helpers/processes.ts";
import { untilClientCount } from "./helpers/waits.ts";
import {
  callMethod,
  clientCountVia,
  Code,
  codeOf,
  dial,
  type DialOptions,
  registerMembers,
} from "./helpers/rpc.ts";

const text = (value: string) => ({ body: { case: "text", value } });

/** For each method, a request that would change something if accepted. */
function harmfulRequests(method: DescMethod, clientId: string): object[] {
  switch (method.localName) {
    case "sendToAll":
    case "sendToClient":
      return [{ clientId, payload: text("intruder") }];
    case "sendToUid":
      return [{ uids: ["u1"], payload: text("intruder") }];
    case "sendToGroup":
      return [{ groups: ["g1"], payload: text("intruder") }];
    case "deliver":
      return [{
        deliveries: [
          {
            target: { case: "client", value: { clientId, payload: text("x") } },
          },
          { target: { case: "all", value: { payload: text("x") } } },
          { target: { case: "close", value: { clientId } } },
        ],
      }];
    case "closeClient":
    case "unbindUid":
      return [{ clientId }];
    case "bindUid":
      return [{ clientId, uid: "intruder" }];
    case "joinGroup":
      return [{ clientId, group: "intruders" }];
    case "leaveGroup":
      return [{ clientId, group: "g1" }];
    case "ungroup":
      return [{ group: "g1" }];
    case "setInfo":
    case "updateInfo":
      return [{ clientId, info: { who: "intruder" } }];
    default:
      return [{ clientId, uid: "u1", group: "g1" }];
  }
}

const BAD_CREDENTIALS: [string, DialOptions][] = [
  ["no secret", { secret: null }],
  ["a wrong secret", { secret: "wrong" }],
  ["the secret with a suffix", { secret: "s3cret-a" }],
  ["another scheme", { authorization: "Basic s3cret" }],
  ["an empty header", { authorization: "" }],
];

Deno.test("a secret guards every register and service RPC", async (t) => {
  const secret = "s3cret";
  const register = await startRegisterProcess(["--secret", secret]);
  const s1 = await startServiceProcess(register.address, ["--secret", secret]);
  const s2 = await startServiceProcess(register.address, ["--secret", secret]);
  const c1 = await TestClient.connect(s1.info.port);
  try {
    await using caller = await startCaller(register.address, { secret });
    const api = caller.api;
    await untilClientCount(api, 1, "the caller sees the client");
    await api.bindUid(c1.id, "u1");
    await api.joinGroup(c1.id, "g1");

    await t.step(
      "every GatewayService method refuses a call without the right secret",
      async () => {
        for (const [what, credentials] of BAD_CREDENTIALS) {
          for (const address of [s1.info.rpcAddress, s2.info.rpcAddress]) {
            using channel = dial(address, credentials);
            for (const method of GatewayService.methods) {
              const code = await codeOf(
                callMethod(
                  channel.transport,
                  method,
                  harmfulRequests(method, c1.id),
                ),
              );
              assert.equal(
                code,
                Code.Unauthenticated,
                `${method.name} with ${what}`,
              );
            }
          }
        }
      },
    );

    await t.step("nothing a refused call asked for happened", async () => {
      assert.equal(await api.isOnline(c1.id), true);
      assert.equal(await api.getUidByClientId(c1.id), "u1");
      assert.deepEqual(await api.getAllGroups(), ["g1"]);
      assert.deepEqual(await api.getInfo(c1.id), {});
      await api.sendToClient(c1.id, "marker");
      assert.equal(await c1.next(), "marker");
      assert.deepEqual(c1.pending, []);
    });

    await t.step(
      "every RegisterService method refuses a call without the right secret",
      async () => {
        const intruder = {
          member: { nodeId: "0123456789ab", rpcAddress: "127.0.0.1:1" },
        };
        for (const [what, credentials] of BAD_CREDENTIALS) {
          using channel = dial(register.address, credentials);
          for (const method of RegisterService.methods) {
            const code = await codeOf(
              callMethod(channel.transport, method, [intruder]),
            );
            assert.equal(
              code,
              Code.Unauthenticated,
              `${method.name} with ${what}`,
            );
          }
        }
        assert.deepEqual(
          (await registerMembers(register.address, { secret })).sort(),
          [s1.info.nodeId, s2.info.nodeId, caller.nodeId].sort(),
        );
      },
    );

    await t.step("the right secret is accepted by both", async () => {
      assert.equal(await clientCountVia(s2.info.rpcAddress, { secret }), 1);
      assert.deepEqual(
        (await registerMembers(register.address, { secret })).length,
        3,
      );
      // Joining is for nodes: they prove the secret, never send it.
      const join = [{
        member: { nodeId: "0123456789ab", rpcAddress: "127.0.0.1:1" },
      }];
      using bearer = dial(register.address, { secret });
      assert.equal(
        await codeOf(
          callMethod(bearer.transport, RegisterService.method.join, join),
        ),
        Code.Unauthenticated,
      );
      using reg = dial(register.address, {
        node: { secret, role: "register" },
      });
      const [first] = await callMethod(
        reg.transport,
        RegisterService.method.join,
        join,
      ) as [{ event: { case: string } }];
      assert.equal(first.event.case, "members");
    });
  } finally {
    await c1.close();
    await s1.child.stop();
    await s2.child.stop();
    await register.child.stop();
  }
});

/** What a service that every register refused logs. */
const REFUSED_LOG =
  / ERROR service \S+: register refused this service's secret; check that every register and service uses the same secret register=/;
const STOPPING_LOG =
  / ERROR service \S+: no register accepted this service; stopping /;

Deno.test("a service with a wrong or no secret cannot join", async (t) => {
  const register = await startRegisterProcess(["--secret", "right"]);
  try {
    for (const secret of ["wrong", undefined]) {
      await t.step(
        `startService() rejects with unauthenticated (secret ${secret})`,
        async () => {
          using logs = captureLogs(REFUSED_LOG, STOPPING_LOG);
          await assert.rejects(
            startCaller(register.address, {
              // Far longer than a refusal takes: resolving after it would
              // mean the refusal went unnoticed.
              joinTimeoutMs: 60_000,
              ...(secret === undefined ? {} : { secret }),
            }),
            (error) =>
              error instanceof GatewayError &&
              error.code === "unauthenticated" &&
              /every register refused this service's secret/.test(
                error.message,
              ),
          );
          // And it says so in its log, once each.
          assert.equal(
            logs.matching(REFUSED_LOG).length,
            1,
            logs.lines.join("\n"),
          );
          assert.equal(
            logs.matching(STOPPING_LOG).length,
            1,
            logs.lines.join("\n"),
          );
        },
      );
    }

    await t.step("a service process says why and exits", async () => {
      const { code, stderr } = await runCapturingStderr(
        "service.ts",
        serviceArgs("tests/fixtures/echo_app.ts", register.address, [
          "--secret",
          "wrong",
          "--join-timeout-ms",
          "60000",
        ]),
        null,
        60_000,
      );
      assert.equal(code, 1, stderr);
      assert.match(stderr, /ERROR .*register refused this service's secret/);
      assert.match(
        stderr,
        /^service: Cannot join the cluster: every register refused this service's secret/m,
      );
    });

    await t.step("the register lists none of them", async () => {
      assert.deepEqual(
        await registerMembers(register.address, { secret: "right" }),
        [],
      );
    });
  } finally {
    await register.child.stop();
  }
});

// 192.0.2.1 (TEST-NET-1) is not an address of this host: the process warns,
// then fails to listen, so nothing ever listens beyond loopback.
const NOT_LOOPBACK = "192.0.2.1";
const REGISTER_WARNING = /register listens beyond loopback without a secret/;
const RPC_WARNING = /RPC port listens beyond loopback without a secret/;

Deno.test("listening beyond loopback without a secret logs a warning", async (t) => {
  await t.step("register.ts", async () => {
    const open = await runCapturingStderr(
      "register.ts",
      ["--hostname", NOT_LOOPBACK, "--port", "0"],
      /register: /,
    );
    assert.match(open.stderr, REGISTER_WARNING);
    const guarded = await runCapturingStderr(
      "register.ts",
      ["--hostname", NOT_LOOPBACK, "--port", "0", "--secret", "s"],
      /register: /,
    );
    assert.doesNotMatch(guarded.stderr, REGISTER_WARNING);
    assert.match(guarded.stderr, /register: /);
    using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const loopback = await runCapturingStderr(
      "register.ts",
      ["--hostname", "127.0.0.1", "--port", String(taken.addr.port)],
      /register: /,
    );
    assert.doesNotMatch(loopback.stderr, REGISTER_WARNING);
    assert.match(loopback.stderr, /port is in use/);
  });

  await t.step("a service's RPC port", async () => {
    const args = serviceArgs("tests/fixtures/echo_app.ts", "127.0.0.1:1", [
      "--rpc-hostname",
      NOT_LOOPBACK,
    ]);
    const open = await runCapturingStderr("service.ts", args, /^service: /m);
    assert.match(open.stderr, RPC_WARNING);
    const guarded = await runCapturingStderr(
      "service.ts",
      [...args, "--secret", "s"],
      /^service: /m,
    );
    assert.doesNotMatch(guarded.stderr, RPC_WARNING);
    assert.match(guarded.stderr, /^service: /m);
  });
});
