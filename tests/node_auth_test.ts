// Between nodes the cluster secret never travels: a service proves it to
// its registers and peers with an HMAC over a nonce of theirs and the
// address it dialed (internal/base/node_proof.ts), on gRPC and on the
// delivery port, and sends nothing but the challenge to a node that cannot
// prove the secret in turn. Fake nodes here record every header and byte
// they get; a proof is good only at the node it was made for.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { ConnectError, createClient } from "@connectrpc/connect";
import { IncompleteResultError, startService } from "../mod.ts";
import { GatewayService, Scope } from "../proto/gen/websocket/v1/gateway_pb.ts";
import { NodeAuthService } from "../proto/gen/websocket/v1/node_auth_pb.ts";
import { RegisterService } from "../proto/gen/websocket/v1/register_pb.ts";
import {
  callerProof,
  NODE_PROOF_SCHEME,
  peerBinding,
  REGISTER_BINDING,
} from "../internal/base/node_proof.ts";
import { LINK_VERSION, MAGIC } from "../internal/delivery/wire.ts";
import { parseLinkId } from "../internal/delivery/link_id.ts";
import {
  FakeDeliveryPort,
  FakeNode,
  type Recording,
} from "./helpers/fake_nodes.ts";
import {
  greeter,
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { callMethod, Code, codeOf, dial } from "./helpers/rpc.ts";
import { eventually } from "./helpers/waits.ts";

const SECRET = "the-cluster-s3cret-0123456789";
/** The node id a fake member announces. */
const FAKE_ID = "0123456789ab";
const PROOF = new RegExp(
  `^${NODE_PROOF_SCHEME} [A-Za-z0-9_-]+\\.[A-Za-z0-9_-]{43}$`,
);

/**
 * The ways the secret could show in what a node sent: as it is, and in
 * base64 or base64url at each alignment (inside a longer encoded value,
 * such as `Basic` credentials, only its middle is the same).
 */
function secretForms(secret: string): string[] {
  const forms = [secret];
  for (const pad of ["", "x", "xx"]) {
    for (const encoding of ["base64", "base64url"] as const) {
      const encoded = Buffer.from(pad + secret).toString(encoding);
      forms.push(pad === "" ? encoded.replace(/=+$/, "") : "");
      forms.push(encoded.slice(4, -4));
    }
  }
  return forms.filter((form) => form.length >= 8);
}

function assertNoSecret(recording: Recording, what: string): void {
  const text = recording.text();
  for (const form of secretForms(SECRET)) {
    assert.ok(
      !text.includes(form),
      `${what} received the cluster secret (as ${JSON.stringify(form)})`,
    );
  }
}

/** The authorization headers of the calls to `path` a fake got. */
function authorizationsOf(node: FakeNode, path: string): unknown[] {
  return node.recording.calls.filter((call) => call.path === path).map((
    call,
  ) => call.headers["authorization"]);
}

function pathOf(
  service: typeof GatewayService | typeof RegisterService,
  method: string,
): string {
  return `/${service.typeName}/${method}`;
}

const CHALLENGE = `/${NodeAuthService.typeName}/Challenge`;
const JOIN = pathOf(RegisterService, "Join");
const DELIVER = pathOf(GatewayService, "Deliver");

Deno.test("no node sends the cluster secret to a register or a peer", async (t) => {
  await t.step(
    "a register and a peer that know the secret get proofs, on gRPC and on the delivery port",
    async () => {
      await using port = new FakeDeliveryPort();
      await using peer = await FakeNode.start({
        role: "peer",
        secret: SECRET,
        deliveryPort: () => port.port,
      });
      await using register = await FakeNode.start({
        role: "register",
        secret: SECRET,
        members: () => [{ nodeId: FAKE_ID, rpcAddress: peer.address }],
      });
      await using service = await startService(
        greeter,
        localServiceOptions(register.address, {
          secret: SECRET,
          logLevel: "error",
        }),
      );
      // A unary call with node scope, and deliveries: first on the Deliver
      // stream, then on the delivery port the peer names there.
      assert.equal(await service.api.getAllClientCount(), 0);
      await eventually("deliveries reach the fake delivery port", async () => {
        await service.api.sendToAll("hello");
        return port.batches > 0;
      });

      assertNoSecret(register.recording, "the register");
      assertNoSecret(peer.recording, "the peer");
      assertNoSecret(port.recording, "the delivery port");

      assert.deepEqual(register.paths.slice(0, 2), [CHALLENGE, JOIN]);
      assert.match(String(authorizationsOf(register, JOIN)[0]), PROOF);
      assert.ok(peer.paths.includes(CHALLENGE), peer.paths.join(" "));
      const unary = pathOf(GatewayService, "GetAllClientCount");
      for (const path of [unary, DELIVER]) {
        const [authorization] = authorizationsOf(peer, path);
        assert.match(String(authorization), PROOF, path);
      }
      // The hello of version 3 carries the proof of the gRPC channel,
      // then the connection's link id.
      const [hello] = port.hellos;
      assert.ok(hello !== undefined);
      assert.deepEqual([...hello.subarray(0, 5)], [...MAGIC, LINK_VERSION]);
      const tokenEnd = 7 + (hello[5]! << 8 | hello[6]!);
      const token = new TextDecoder().decode(hello.subarray(7, tokenEnd));
      assert.equal(
        `${NODE_PROOF_SCHEME} ${token}`,
        authorizationsOf(peer, DELIVER)[0],
      );
      const link = new TextDecoder().decode(
        hello.subarray(tokenEnd + 1, tokenEnd + 1 + hello[tokenEnd]!),
      );
      assert.ok(parseLinkId(link).seq > 0, link);
    },
  );

  await t.step(
    "a member that joined a register without a secret, and cannot prove it, gets nothing but the challenge",
    async () => {
      await using register = await startLocalRegister({ logLevel: "error" });
      await using port = new FakeDeliveryPort();
      await using stranger = await FakeNode.start({
        role: "peer",
        deliveryPort: () => port.port,
      });
      // Anyone may join a register without a secret, with any address.
      using channel = dial(register.address);
      const leave = new AbortController();
      const joined = (async () => {
        const stream = createClient(RegisterService, channel.transport).join(
          { member: { nodeId: FAKE_ID, rpcAddress: stranger.address } },
          { signal: leave.signal },
        );
        for await (const _ of stream) { /* stays a member */ }
      })().catch(() => {});
      try {
        await using service = await startService(
          greeter,
          localServiceOptions(register.address, {
            secret: SECRET,
            logLevel: "error",
          }),
        );
        const refused = (error: unknown) =>
          error instanceof IncompleteResultError &&
          error.failures.length === 1 &&
          error.failures[0]!.address === stranger.address &&
          error.failures[0]!.error.code === "unauthenticated" &&
          /could not prove that it knows the cluster secret/.test(
            error.message,
          );
        await eventually("the service refuses the stranger", async () => {
          try {
            await service.api.getAllClientCount();
            return false;
          } catch (error) {
            return refused(error);
          }
        });
        await assert.rejects(service.api.sendToAll("secret news"), refused);
        await assert.rejects(service.api.getAllClientIds(), refused);
      } finally {
        leave.abort();
        await joined;
      }
      assert.ok(stranger.paths.length > 0);
      assert.deepEqual(
        [...new Set(stranger.paths)],
        [CHALLENGE],
        "nothing but challenges",
      );
      assert.deepEqual(
        authorizationsOf(stranger, CHALLENGE).filter(Boolean),
        [],
      );
      assert.equal(port.recording.size, 0, "the delivery port got nothing");
      assertNoSecret(stranger.recording, "the stranger");
    },
  );
});

/** What a call failed with: its code and message, or "ok". */
async function outcome(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return "ok";
  } catch (error) {
    const e = ConnectError.from(error);
    return `${Code[e.code]}: ${e.rawMessage}`;
  }
}

Deno.test("a node proof is good only at the node it was made for", async (t) => {
  await using register = await startLocalRegister({
    secret: SECRET,
    logLevel: "error",
  });
  const options = localServiceOptions(register.address, {
    secret: SECRET,
    logLevel: "error",
  });
  await using s1 = await startService(greeter, options);
  await using s2 = await startService(greeter, options);
  await eventually(
    "the services see each other",
    async () => (await s1.api.getAllClientCount()) === 0,
  );

  /** A nonce from the node at `address`, which anyone may ask for. */
  const nonceOf = async (address: string) => {
    using channel = dial(address, { secret: null });
    const [answer] = await callMethod(
      channel.transport,
      NodeAuthService.method.challenge,
      [{ clientNonce: randomBytes(16) }],
    ) as [{ nonce: string }];
    return answer.nonce;
  };
  const proof = (nonce: string, binding: string, secret = SECRET) =>
    `${NODE_PROOF_SCHEME} ${nonce}.${callerProof(secret, nonce, binding)}`;
  /** A node-scope call to the service at `address`. */
  const countAt = async (address: string, authorization: string) => {
    using channel = dial(address, { authorization });
    return await outcome(callMethod(
      channel.transport,
      GatewayService.method.getAllClientCount,
      [{ scope: Scope.NODE }],
    ));
  };
  const joinAt = async (authorization: string) => {
    using channel = dial(register.address, { authorization });
    return await outcome(
      callMethod(channel.transport, RegisterService.method.join, [
        { member: { nodeId: FAKE_ID, rpcAddress: "127.0.0.1:1" } },
      ]),
    );
  };

  await t.step(
    "a proof for the node called is accepted, again and again",
    async () => {
      const nonce = await nonceOf(s2.rpcAddress);
      const right = proof(nonce, peerBinding(s2.rpcAddress));
      for (let i = 0; i < 3; i++) {
        assert.equal(await countAt(s2.rpcAddress, right), "ok");
      }
    },
  );

  await t.step(
    "a proof made for another address, as a fake member would get one, is refused",
    async () => {
      const nonce = await nonceOf(s2.rpcAddress);
      for (const other of [s1.rpcAddress, "127.0.0.1:1", "fake:8102"]) {
        assert.match(
          await countAt(s2.rpcAddress, proof(nonce, peerBinding(other))),
          /^Unauthenticated: Wrong node proof/,
        );
      }
    },
  );

  await t.step("a proof replayed at another node is refused", async () => {
    // Good at s1: its nonce, bound to its address.
    const atS1 = proof(
      await nonceOf(s1.rpcAddress),
      peerBinding(s1.rpcAddress),
    );
    assert.equal(await countAt(s1.rpcAddress, atS1), "ok");
    assert.match(
      await countAt(s2.rpcAddress, atS1),
      /^Unauthenticated: (Unknown nonce|Wrong node proof)/,
    );
    // The register's nonces are no good at a service either.
    const atRegister = await nonceOf(register.address);
    assert.match(
      await countAt(
        s2.rpcAddress,
        proof(atRegister, peerBinding(s2.rpcAddress)),
      ),
      /^Unauthenticated: Unknown nonce/,
    );
  });

  await t.step(
    "another secret, a made-up nonce, or no proof is refused",
    async () => {
      const nonce = await nonceOf(s2.rpcAddress);
      const binding = peerBinding(s2.rpcAddress);
      const cases: [string, RegExp][] = [
        [
          proof(nonce, binding, "another-secret"),
          /^Unauthenticated: Wrong node proof/,
        ],
        [proof("made-up", binding), /^Unauthenticated: Unknown nonce/],
        [
          `${NODE_PROOF_SCHEME} ${nonce}`,
          /^Unauthenticated: Malformed node proof/,
        ],
        // A backend's bearer secret does not make a node.
        [
          `Bearer ${SECRET}`,
          /^Unauthenticated: Cannot call with scope SCOPE_NODE as a backend/,
        ],
        ["", /^Unauthenticated: Missing secret/],
      ];
      for (const [authorization, expected] of cases) {
        assert.match(
          await countAt(s2.rpcAddress, authorization),
          expected,
          authorization,
        );
      }
    },
  );

  await t.step(
    'the register takes proofs bound to "register" only, and no bearer for Join',
    async () => {
      const nonce = await nonceOf(register.address);
      assert.match(
        await joinAt(proof(nonce, peerBinding(register.address))),
        /^Unauthenticated: Wrong node proof/,
      );
      assert.match(
        await joinAt(`Bearer ${SECRET}`),
        /^Unauthenticated: Cannot call this method with a bearer token/,
      );
      assert.equal(await joinAt(proof(nonce, REGISTER_BINDING)), "ok");
    },
  );

  await t.step("the Deliver stream takes no bearer either", async () => {
    using channel = dial(s2.rpcAddress, { secret: SECRET });
    assert.match(
      await outcome(
        callMethod(channel.transport, GatewayService.method.deliver, [{}]),
      ),
      /^Unauthenticated: Cannot call this method with a bearer token/,
    );
  });

  await t.step("the cluster still works", async () => {
    assert.equal(await codeOf(s1.api.getAllClientCount()), "ok");
    await s2.api.sendToAll("still here");
  });
});

Deno.test("a caller whose nonce the callee no longer knows asks for a new one, once", async () => {
  const first = await startLocalRegister({ secret: SECRET, logLevel: "error" });
  const address = first.address;
  // One channel, as a service keeps to its register: its proof is cached.
  using channel = dial(address, { node: { secret: SECRET, role: "register" } });
  const list = () =>
    outcome(
      callMethod(channel.transport, RegisterService.method.listMembers, [{}]),
    );
  assert.equal(await list(), "ok");
  // The register restarts on the same port: a new process, new nonces.
  await first.close();
  await using second = await startLocalRegister({
    secret: SECRET,
    port: first.port,
    logLevel: "error",
  });
  assert.equal(second.address, address);
  assert.equal(await list(), "ok");
  assert.equal(await list(), "ok");
});
