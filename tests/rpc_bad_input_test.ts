// Bad input at every public entry point gets a clear, typed error, and
// loses nothing: every Api method (which rejects, never throws; the Api's
// cases in depth are in bad_input_test.ts), the service's RPC port, the
// register's Join, start options, and idle or garbage connections.

import assert from "node:assert/strict";
import { type Api, GatewayError, startService } from "../mod.ts";
import { GatewayService } from "../proto/gen/websocket/v1/gateway_pb.ts";
import { RegisterService } from "../proto/gen/websocket/v1/register_pb.ts";
import { TestClient } from "./helpers/clients.ts";
import {
  greeter,
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { untilClientCount } from "./helpers/waits.ts";
import { callMethod, Code, codeOf, dial, memberIdsVia } from "./helpers/rpc.ts";
import { maxRequestBytes } from "../internal/api/request_size.ts";

/** Bad calls of every Api method, about the client `id`. */
function badCalls(
  api: Api,
  id: string,
  big: string,
): [string, () => Promise<unknown>][] {
  // deno-lint-ignore no-explicit-any
  const loose = api as any;
  const long = "x".repeat(256);
  const longUnicode = "é".repeat(128); // 256 bytes of UTF-8
  return [
    ["sendToAll(undefined)", () => loose.sendToAll(undefined)],
    ["sendToAll(42)", () => loose.sendToAll(42)],
    ["sendToAll(too big)", () => api.sendToAll(big)],
    ["sendToAll(exclude string)", () => loose.sendToAll("x", { exclude: id })],
    [
      "sendToAll(exclude numbers)",
      () => loose.sendToAll("x", { exclude: [1] }),
    ],
    ["sendToClient(malformed id)", () => api.sendToClient("not-an-id", "x")],
    ["sendToClient(empty id)", () => api.sendToClient("", "x")],
    ["sendToClient(number id)", () => loose.sendToClient(7, "x")],
    ["sendToClient(id with suffix)", () => api.sendToClient(`${id}.1`, "x")],
    ["sendToClient(null message)", () => loose.sendToClient(id, null)],
    ["sendToClient(too big)", () => api.sendToClient(id, big)],
    [
      "sendToClient(too big bytes)",
      () => api.sendToClient(id, new Uint8Array(big.length)),
    ],
    ["sendToUid(empty)", () => api.sendToUid("", "x")],
    ["sendToUid(one empty)", () => api.sendToUid(["u", ""], "x")],
    ["sendToUid(number)", () => loose.sendToUid([5], "x")],
    ["sendToUid(too long)", () => api.sendToUid(long, "x")],
    ["sendToUid(too long unicode)", () => api.sendToUid(longUnicode, "x")],
    ["sendToGroup(empty)", () => api.sendToGroup("", "x")],
    ["sendToGroup(object)", () => loose.sendToGroup({}, "x")],
    [
      "sendToGroup(exclude null)",
      () => loose.sendToGroup("g", "x", { exclude: null }),
    ],
    ["sendToGroup(too big)", () => api.sendToGroup("g", big)],
    ["bindUid(empty uid)", () => api.bindUid(id, "")],
    ["bindUid(number uid)", () => loose.bindUid(id, 5)],
    ["bindUid(too long uid)", () => api.bindUid(id, long)],
    ["bindUid(malformed id)", () => api.bindUid("bad", "u")],
    ["unbindUid(malformed id)", () => api.unbindUid("bad")],
    ["isUidOnline(empty)", () => api.isUidOnline("")],
    ["getUidByClientId(malformed)", () => api.getUidByClientId("bad")],
    ["getClientIdsByUid(empty)", () => api.getClientIdsByUid("")],
    ["joinGroup(empty group)", () => api.joinGroup(id, "")],
    ["joinGroup(too long group)", () => api.joinGroup(id, long)],
    ["joinGroup(malformed id)", () => api.joinGroup("bad", "g")],
    ["leaveGroup(empty group)", () => api.leaveGroup(id, "")],
    ["ungroup(empty)", () => api.ungroup("")],
    ["getClientCountByGroup(empty)", () => api.getClientCountByGroup("")],
    ["getClientIdsByGroup(empty)", () => api.getClientIdsByGroup("")],
    ["getUidsByGroup(empty)", () => api.getUidsByGroup("")],
    ["getUidCountByGroup(empty)", () => api.getUidCountByGroup("")],
    ["getClientInfosByGroup(empty)", () => api.getClientInfosByGroup("")],
    ["isOnline(malformed)", () => api.isOnline("bad")],
    ["closeClient(malformed)", () => api.closeClient("bad")],
    ["closeClient(number message)", () => loose.closeClient(id, 5)],
    ["closeClient(too big)", () => api.closeClient(id, big)],
    ["getInfo(malformed)", () => api.getInfo("bad")],
    ["setInfo(number value)", () => loose.setInfo(id, { a: 1 })],
    ["setInfo(null)", () => loose.setInfo(id, null)],
    ["setInfo(array)", () => loose.setInfo(id, ["a"])],
    ["setInfo(string)", () => loose.setInfo(id, "a=b")],
    [
      "updateInfo(undefined value)",
      () => loose.updateInfo(id, { a: undefined }),
    ],
    ["updateInfo(malformed id)", () => api.updateInfo("bad", {})],
  ];
}

Deno.test("every Api method rejects bad input, never throws, and changes nothing", async (t) => {
  await using register = await startLocalRegister({ logLevel: "error" });
  const options = localServiceOptions(register.address, {
    maxPeerQueueBytes: 4096,
    maxSendBytes: 4096,
    logLevel: "error",
  });
  await using a = await startService(greeter, options);
  await using b = await startService(greeter, options);
  await using local = await TestClient.connect(a.port);
  await using remote = await TestClient.connect(b.port);
  await untilClientCount(a.api, 2, "a sees both clients");
  const big = "x".repeat(4097);

  for (const client of [local, remote]) {
    const where = client === local ? "a local" : "a remote";
    await t.step(`about ${where} client`, async () => {
      for (const [what, call] of badCalls(a.api, client.id, big)) {
        let promise: Promise<unknown>;
        try {
          promise = call();
        } catch (error) {
          assert.fail(`${what} threw instead of rejecting: ${error}`);
        }
        await assert.rejects(
          promise,
          (error) =>
            error instanceof GatewayError &&
            error.code === "invalid_argument" && error.message.length > 0,
          what,
        );
      }
    });
  }

  await t.step("nothing happened to anyone", async () => {
    for (const client of [local, remote]) {
      assert.equal(await a.api.isOnline(client.id), true);
      assert.equal(await a.api.getUidByClientId(client.id), undefined);
      assert.deepEqual(await a.api.getInfo(client.id), {});
      await a.api.sendToClient(client.id, "marker");
      assert.equal(await client.next(), "marker");
      assert.deepEqual(client.pending, []);
    }
    assert.deepEqual(await a.api.getAllGroups(), []);
    assert.deepEqual(await a.api.getAllUid(), []);
  });

  await t.step(
    "well-formed but unknown clientIds count as offline",
    async () => {
      const foreign = "0123456789ab.1";
      await a.api.sendToClient(foreign, "x");
      await a.api.bindUid(foreign, "u");
      assert.equal(await a.api.isOnline(foreign), false);
      assert.equal(await a.api.getInfo(foreign), undefined);
      assert.deepEqual(await a.api.getAllUid(), []);
    },
  );

  await t.step("the limits themselves are allowed", async () => {
    const exactly = "é".repeat(127) + "x"; // 255 bytes of UTF-8
    await a.api.bindUid(remote.id, exactly);
    assert.equal(await a.api.getUidByClientId(remote.id), exactly);
    await a.api.joinGroup(remote.id, "🙂 group");
    assert.deepEqual(await a.api.getAllGroups(), ["🙂 group"]);
    await a.api.sendToClient(remote.id, "y".repeat(4096));
    assert.equal(await remote.next(), "y".repeat(4096));
  });
});

Deno.test("the RPC port answers bad requests with INVALID_ARGUMENT", async (t) => {
  await using register = await startLocalRegister({ logLevel: "error" });
  await using service = await startService(
    greeter,
    localServiceOptions(register.address, {
      maxPeerQueueBytes: 4096,
      maxSendBytes: 4096,
      logLevel: "error",
    }),
  );
  await using client = await TestClient.connect(service.port);
  using channel = dial(service.rpcAddress);
  const call = (name: keyof typeof GatewayService.method, request: object) =>
    codeOf(
      callMethod(channel.transport, GatewayService.method[name], [request]),
    );
  const text = (value: string) => ({ body: { case: "text", value } });
  const id = client.id;

  await t.step("garbage fields", async () => {
    const cases: [keyof typeof GatewayService.method, object][] = [
      ["sendToClient", { clientId: "bad", payload: text("x") }],
      ["sendToClient", { clientId: id, payload: text("x"), scope: 99 }],
      ["sendToClient", { clientId: id, payload: text("x"), scope: -1 }],
      ["sendToClient", { clientId: id }],
      ["sendToAll", {}],
      ["sendToUid", { uids: [""], payload: text("x") }],
      ["sendToUid", { uids: [""], payload: text("x"), scope: 2 }],
      ["sendToGroup", { groups: ["x".repeat(300)], payload: text("x") }],
      ["bindUid", { clientId: id, uid: "" }],
      ["bindUid", { clientId: id, uid: "", scope: 2 }],
      ["bindUid", { clientId: "😀", uid: "u", scope: 2 }],
      ["joinGroup", { clientId: id, group: "" }],
      ["leaveGroup", { clientId: "", group: "g", scope: 2 }],
      ["isOnline", { clientId: "\u0000" }],
      ["getInfo", { clientId: "x".repeat(10_000) }],
      ["setInfo", { clientId: "bad", info: { a: "b" } }],
      ["getClientIdsByUid", { uid: "" }],
      ["getClientCountByGroup", { group: "", scope: 2 }],
      ["getAllClientCount", { scope: 7 }],
    ];
    for (const [name, request] of cases) {
      assert.equal(
        await call(name, request),
        Code.InvalidArgument,
        `${name} ${JSON.stringify(request).slice(0, 80)}`,
      );
    }
  });

  await t.step("oversized payloads", async () => {
    // Over the Api's limit (maxSendBytes): refused by the Api.
    assert.equal(
      await call("sendToAll", { payload: text("x".repeat(5000)) }),
      Code.InvalidArgument,
    );
    // Over the RPC port's limit for unary requests (what the largest legal
    // request needs, internal/api/request_size.ts): refused unread.
    const limit = maxRequestBytes({
      maxSendBytes: 4096,
      maxInfoKeys: 64,
      maxInfoBytes: 16 * 1024,
    });
    assert.equal(
      await call("sendToAll", { payload: text("x".repeat(limit)) }),
      Code.ResourceExhausted,
    );
    assert.equal(
      await call("sendToAll", { payload: text("x".repeat(limit - 100)) }),
      Code.InvalidArgument,
    );
  });

  await t.step("nothing happened", async () => {
    assert.equal(await service.api.getUidByClientId(id), undefined);
    assert.deepEqual(await service.api.getAllGroups(), []);
    assert.deepEqual(await service.api.getInfo(id), {});
    await service.api.sendToClient(id, "marker");
    assert.equal(await client.next(), "marker");
    assert.deepEqual(client.pending, []);
  });
});

Deno.test("the register refuses members that are not node id and host:port", async () => {
  await using register = await startLocalRegister({ logLevel: "error" });
  const address = register.address;
  using channel = dial(address);
  const join = (member: object | undefined) =>
    codeOf(
      callMethod(channel.transport, RegisterService.method.join, [
        member === undefined ? {} : { member },
      ]),
    );
  const nodeId = "0123456789ab";
  for (
    const rpcAddress of [
      "",
      "nonsense",
      "127.0.0.1",
      "127.0.0.1:0",
      "127.0.0.1:65536",
      "127.0.0.1:-1",
      "[::1:80",
      "a b:80",
      "host:80:80",
      "😀:80",
    ]
  ) {
    assert.equal(
      await join({ nodeId, rpcAddress }),
      Code.InvalidArgument,
      rpcAddress,
    );
  }
  for (const badId of ["", "ABCDEFGHIJKL", "0123456789a", "0123456789abc"]) {
    assert.equal(
      await join({ nodeId: badId, rpcAddress: "127.0.0.1:80" }),
      Code.InvalidArgument,
      badId,
    );
  }
  assert.equal(await join(undefined), Code.InvalidArgument);
  assert.deepEqual(await memberIdsVia(channel.transport), []);
});

Deno.test("startService() rejects bad options with TypeError or RangeError", async () => {
  const cases: [
    Record<string, unknown>,
    typeof TypeError | typeof RangeError,
  ][] = [
    [{ register: "nonsense" }, TypeError],
    [{ register: "host:99999" }, TypeError],
    [{ register: ["127.0.0.1:1", "x"] }, TypeError],
    [{ register: [] }, TypeError],
    [{ register: "127.0.0.1:1", port: -1 }, RangeError],
    [{ register: "127.0.0.1:1", deadlineMs: 0 }, RangeError],
    [{ register: "127.0.0.1:1", maxPeerQueueBytes: 1.5 }, RangeError],
    [{ register: "127.0.0.1:1", secret: "" }, TypeError],
  ];
  for (const [options, kind] of cases) {
    await assert.rejects(
      // deno-lint-ignore no-explicit-any
      startService({}, options as any),
      (error) => error instanceof kind && /^Cannot start: /.test(error.message),
      JSON.stringify(options),
    );
  }
});

Deno.test("idle and garbage connections do not keep register or service from closing", async () => {
  const register = await startLocalRegister({ logLevel: "error" });
  const service = await startService(
    {},
    localServiceOptions(register.address, { logLevel: "error" }),
  );
  const rpcPort = Number(service.rpcAddress.split(":").at(-1));
  const connections: Deno.TcpConn[] = [];
  for (const port of [rpcPort, register.port]) {
    // One that says nothing, one that stops inside the HTTP/2 preface, one
    // that sends garbage and keeps the connection open.
    connections.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    const partial = await Deno.connect({ hostname: "127.0.0.1", port });
    await partial.write(new TextEncoder().encode("PRI * HTTP/2.0\r\n"));
    const garbage = await Deno.connect({ hostname: "127.0.0.1", port });
    await garbage.write(crypto.getRandomValues(new Uint8Array(64)));
    connections.push(partial, garbage);
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      (async () => {
        await service.close();
        await register.close();
      })(),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error("close() still waits on idle connections")),
          15_000,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    for (const conn of connections) conn.close();
  }
});
