// TLS and mutual TLS for register and peer RPC, with certificates made by
// openssl for this run: the cluster works over TLS, and plaintext callers,
// callers without a client certificate and callers with a certificate from
// another CA are refused.

import assert from "node:assert/strict";
import {
  GatewayError,
  startRegister,
  startService,
  type TlsOptions,
} from "../mod.ts";
import { GatewayService } from "../proto/gen/websocket/v1/gateway_pb.ts";
import { RegisterService } from "../proto/gen/websocket/v1/register_pb.ts";
import { TestClient } from "./helpers/clients.ts";
import {
  localServiceOptions,
  startCaller,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import {
  startRegisterProcess,
  startServiceProcess,
} from "./helpers/processes.ts";
import { untilClientCount } from "./helpers/waits.ts";
import {
  callMethod,
  codeOf,
  dial,
  type DialOptions,
  makeCertificates,
  registerMembers,
} from "./helpers/rpc.ts";

/** Whether a GetAllClientCount / ListMembers call through `options` works. */
async function answers(
  address: string,
  kind: "service" | "register",
  options: DialOptions,
): Promise<boolean> {
  using channel = dial(address, options);
  const method = kind === "service"
    ? GatewayService.method.getAllClientCount
    : RegisterService.method.listMembers;
  return await codeOf(callMethod(channel.transport, method, [{}])) === "ok";
}

Deno.test("mutual TLS: the cluster works and strangers are refused", async (t) => {
  const certs = await makeCertificates();
  const { files } = certs;
  const tlsFlags = [
    "--tls-cert",
    files.nodeCert,
    "--tls-key",
    files.nodeKey,
    "--tls-ca",
    files.ca,
    "--tls-mutual",
  ];
  const register = await startRegisterProcess(tlsFlags);
  const s1 = await startServiceProcess(register.address, tlsFlags);
  const s2 = await startServiceProcess(register.address, tlsFlags);
  const clients: TestClient[] = [];
  try {
    const tls: TlsOptions = { ...certs.node, ca: certs.ca, mutual: true };
    await using caller = await startCaller(register.address, { tls });
    const api = caller.api;

    await t.step("the Api reaches every service over TLS", async () => {
      clients.push(await TestClient.connect(s1.info.port));
      clients.push(await TestClient.connect(s2.info.port));
      await untilClientCount(api, 2, "the caller sees both clients");
      await api.sendToAll("over tls");
      for (const client of clients) {
        assert.equal(await client.next(), "over tls");
      }
      // s1 forwards to s2 over TLS too: the echo goes through s1's Api.
      clients[0]!.socket.send("ping");
      assert.equal(await clients[0]!.next(), "echo:ping");
      await api.bindUid(clients[1]!.id, "u");
      assert.deepEqual(await api.getAllUid(), ["u"]);
    });

    const refused: [string, DialOptions][] = [
      ["plaintext", {}],
      ["TLS without a client certificate", { tls: { ca: certs.ca } }],
      ["a certificate from another CA", {
        tls: { ca: certs.ca, ...certs.stranger },
      }],
      ["TLS that does not trust the cluster's CA", { tls: certs.client }],
    ];
    for (const [what, options] of refused) {
      await t.step(`a caller with ${what} is refused`, async () => {
        for (const address of [s1.info.rpcAddress, register.address]) {
          const kind = address === register.address ? "register" : "service";
          assert.equal(await answers(address, kind, options), false, kind);
        }
      });
    }

    await t.step(
      "a client certificate from the cluster's CA is accepted",
      async () => {
        const options = { tls: { ca: certs.ca, ...certs.client } };
        assert.ok(await answers(s1.info.rpcAddress, "service", options));
        assert.ok(await answers(register.address, "register", options));
      },
    );

    await t.step(
      "a service with a stranger's certificate cannot join",
      async () => {
        await assert.rejects(
          startCaller(register.address, {
            tls: { ...certs.stranger, ca: certs.ca, mutual: true },
            joinTimeoutMs: 1000,
          }),
          (error) =>
            error instanceof GatewayError && error.code === "unavailable" &&
            error.message.includes(
              `no register answered within 1000 ms (tried ${register.address})`,
            ),
        );
        const members = await registerMembers(register.address, {
          tls: { ca: certs.ca, ...certs.node },
        });
        assert.deepEqual(
          members.sort(),
          [s1.info.nodeId, s2.info.nodeId, caller.nodeId].sort(),
        );
      },
    );
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await s1.child.stop();
    await s2.child.stop();
    await register.child.stop();
    await certs.remove();
  }
});

Deno.test("one-way TLS: callers need the CA but no client certificate", async () => {
  const certs = await makeCertificates();
  try {
    const tls: TlsOptions = { ...certs.node, ca: certs.ca };
    await using register = await startLocalRegister({
      tls,
      logLevel: "error",
    });
    const address = register.address;
    const options = localServiceOptions(address, { tls, logLevel: "error" });
    await using a = await startService({}, options);
    await using b = await startService({}, options);
    await using _client = new TestClient(`ws://127.0.0.1:${b.port}/`);
    await untilClientCount(a.api, 1, "a sees the client of b");
    assert.ok(
      await answers(a.rpcAddress, "service", { tls: { ca: certs.ca } }),
    );
    assert.ok(await answers(address, "register", { tls: { ca: certs.ca } }));
    assert.equal(await answers(a.rpcAddress, "service", {}), false);
    assert.equal(await answers(address, "register", {}), false);
  } finally {
    await certs.remove();
  }
});

Deno.test("startRegister() and startService() check TLS options at once", async () => {
  const certs = await makeCertificates();
  try {
    const bad: [TlsOptions, RegExp][] = [
      [{ cert: "nonsense", key: certs.node.key }, /'tls.cert' is not a PEM/],
      [{ cert: certs.node.cert, key: "nonsense" }, /'tls.key' is not a PEM/],
      [
        { cert: certs.node.cert, key: certs.client.key },
        /'tls.key' does not belong to 'tls.cert'/,
      ],
      [{ ...certs.node, mutual: true }, /'tls.mutual' needs 'tls.ca'/],
      [{ ...certs.node, cert: "" }, /'tls.cert' must be a non-empty string/],
    ];
    for (const [tls, message] of bad) {
      await assert.rejects(
        startRegister({ port: 0, tls }),
        (e) => e instanceof TypeError && message.test(e.message),
      );
      await assert.rejects(
        startService({}, { register: "127.0.0.1:1", port: 0, rpcPort: 0, tls }),
        (e) => e instanceof TypeError && message.test(e.message),
      );
    }
  } finally {
    await certs.remove();
  }
});
