// One name per Api method on every surface: the TypeScript Api method
// `getAllUids` is `POST /api/getAllUids` over HTTP and `GetAllUids` over
// gRPC. The names come from the method table, not from a list here; the
// one deprecated old name (`getAllUid`) answers over HTTP with Deprecation
// and Link headers and has no gRPC method of its own.

import assert from "node:assert/strict";
import http2 from "node:http2";
import { type Application, startService } from "../mod.ts";
import { METHOD_NAMES, METHODS } from "../internal/api/method_table.ts";
import { GatewayService } from "../proto/gen/websocket/v1/gateway_pb.ts";
import { TestClient } from "./helpers/clients.ts";
import {
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";

const SECRET = "backend-token";

/** `getAllUids` as gRPC spells it: `GetAllUids`. */
function pascal(name: string): string {
  return name.charAt(0).toUpperCase() + name.slice(1);
}

/** Binds the uid given in `?uid=`, then greets with the clientId. */
const app: Application = {
  async onConnect(clientId, { api, request }) {
    const uid = new URL(request.url).searchParams.get("uid");
    if (uid !== null) await api.bindUid(clientId, uid);
    await api.sendToClient(clientId, `id:${clientId}`);
  },
};

/**
 * Calls `/websocket.v1.GatewayService/<method>` by its path, with an empty
 * request message. Resolves with whether the server has such a method: a
 * path it does not serve answers HTTP 404 or gRPC UNIMPLEMENTED (12).
 */
function servesMethod(rpcAddress: string, method: string): Promise<boolean> {
  const session = http2.connect(`http://${rpcAddress}`);
  return new Promise<boolean>((resolve, reject) => {
    session.on("error", reject);
    const stream = session.request({
      ":method": "POST",
      ":path": `/${GatewayService.typeName}/${method}`,
      "content-type": "application/grpc",
      te: "trailers",
    });
    let httpStatus: number | undefined;
    let grpcStatus: string | undefined;
    const read = (headers: http2.IncomingHttpHeaders) => {
      const value = headers["grpc-status"];
      if (typeof value === "string") grpcStatus = value;
    };
    stream.on("response", (headers) => {
      httpStatus = Number(headers[":status"]);
      read(headers);
    });
    stream.on("trailers", read);
    stream.on("data", () => {});
    stream.on("error", reject);
    stream.on("close", () => {
      if (httpStatus === undefined) {
        reject(new Error(`no answer to ${method}`));
      } else resolve(httpStatus !== 404 && grpcStatus !== "12");
    });
    // One gRPC frame: not compressed, length 0 (an empty message).
    stream.end(new Uint8Array(5));
  }).finally(() => session.close());
}

Deno.test("every Api method has one name in TypeScript, HTTP and gRPC", async (t) => {
  await t.step("the table carries each method on the RPC of its name", () => {
    for (const name of METHOD_NAMES) {
      const spec = METHODS[name];
      const carrier = spec.aliasOf ?? name;
      assert.equal(spec.rpc, carrier, name);
      assert.equal(GatewayService.method[spec.rpc].name, pascal(carrier));
      assert.equal(METHODS[carrier].aliasOf, undefined, `${name}: one hop`);
    }
  });

  await using register = await startLocalRegister({ logLevel: "error" });
  await using service = await startService(app, {
    ...localServiceOptions(register.address, { logLevel: "error" }),
    httpApiSecret: SECRET,
  });
  const post = async (method: string, body: unknown = {}) => {
    const response = await fetch(
      `http://127.0.0.1:${service.port}/api/${method}`,
      {
        method: "POST",
        headers: { authorization: `Bearer ${SECRET}` },
        body: JSON.stringify(body),
      },
    );
    return { response, body: await response.json() };
  };

  await t.step(
    "POST /api/<name> answers for every name of the table",
    async () => {
      for (const name of METHOD_NAMES) {
        // Without arguments most methods answer 400; none may be unknown.
        const { response, body } = await post(name);
        assert.notEqual(
          response.status,
          404,
          `${name}: ${body.error?.message}`,
        );
      }
      const unknown = await post("getAllUidz");
      assert.equal(unknown.response.status, 404, "an unknown name is a 404");
    },
  );

  await t.step(
    "gRPC serves every method at the PascalCase of its name",
    async () => {
      for (const name of METHOD_NAMES) {
        if (METHODS[name].aliasOf !== undefined) continue;
        assert.ok(
          await servesMethod(service.rpcAddress, pascal(name)),
          pascal(name),
        );
      }
      for (const name of METHOD_NAMES) {
        if (METHODS[name].aliasOf === undefined) continue;
        assert.equal(
          await servesMethod(service.rpcAddress, pascal(name)),
          false,
          `the old name ${name} has no gRPC method of its own`,
        );
      }
    },
  );

  await t.step(
    "/api/getAllUids lists the uids; the old name is marked deprecated",
    async () => {
      await using alice = new TestClient(
        `ws://127.0.0.1:${service.port}/?uid=alice`,
      );
      assert.match(String(await alice.next()), /^id:/);
      const current = await post("getAllUids");
      assert.equal(current.response.status, 200);
      assert.deepEqual(current.body, { result: ["alice"] });
      assert.equal(current.response.headers.get("deprecation"), null);

      for (const name of METHOD_NAMES) {
        const successor = METHODS[name].aliasOf;
        if (successor === undefined) continue;
        const old = await post(name);
        assert.equal(old.response.status, 200, name);
        assert.deepEqual(old.body, (await post(successor)).body, name);
        assert.match(old.response.headers.get("deprecation") ?? "", /^@\d+$/);
        assert.equal(
          old.response.headers.get("link"),
          `</api/${successor}>; rel="successor-version"`,
        );
      }
    },
  );
});
