// Node proofs in memory, with a clock of the test's: nonces are good for
// their time to live and only in the issuer that made them, a verifier
// checks proofs against its binding and remembers good ones until their
// nonce expires, and a caller's credentials refresh in time, renew on
// request and refuse a callee that cannot prove the secret.

import assert from "node:assert/strict";
import { GatewayError } from "../../mod.ts";
import { NonceIssuer } from "../../internal/base/nonce_issuer.ts";
import { NodeVerifier } from "../../internal/base/node_verifier.ts";
import {
  callerProof,
  formatNodeToken,
  nodeTokenOf,
  peerBinding,
  REGISTER_BINDING,
} from "../../internal/base/node_proof.ts";
import { NodeCredentials } from "../../internal/grpc/node_credentials.ts";

const SECRET = "s3cret";

/** A clock that moves only when told. */
function clock(start = 1_800_000_000_000): { now(): number; at: number } {
  const c = { at: start, now: () => c.at };
  return c;
}

Deno.test("NonceIssuer.check() takes its own nonces until they expire", () => {
  const time = clock();
  const issuer = new NonceIssuer({ ttlMs: 1000, now: time.now });
  const nonce = issuer.issue();
  assert.match(nonce, /^[A-Za-z0-9_-]{48}$/);
  assert.notEqual(issuer.issue(), nonce);
  assert.equal(issuer.check(nonce), "good");
  time.at += 1000;
  assert.equal(issuer.check(nonce), "good");
  time.at += 1;
  assert.equal(issuer.check(nonce), "expired");
  const other = new NonceIssuer({ ttlMs: 1000, now: time.now });
  assert.equal(other.check(issuer.issue()), "unknown");
  for (const bad of ["", "x", "A".repeat(48), `${nonce}A`, nonce.slice(1)]) {
    assert.equal(issuer.check(bad), "unknown", bad);
  }
  assert.throws(() => new NonceIssuer({ ttlMs: 0 }), RangeError);
});

Deno.test("NodeVerifier.verify() takes proofs for its binding only", async (t) => {
  const time = clock();
  const address = "10.0.0.2:8102";
  const verifier = new NodeVerifier(SECRET, { ttlMs: 60_000, now: time.now });
  const token = (nonce: string, binding: string, secret = SECRET) =>
    formatNodeToken({ nonce, proof: callerProof(secret, nonce, binding) });

  await t.step("nothing before its address is known", () => {
    assert.throws(
      () => verifier.challenge(new Uint8Array(16)),
      (e) => e instanceof GatewayError && e.code === "unavailable",
    );
  });
  verifier.bindTo(address);
  const { nonce, ttlMs } = verifier.challenge(new Uint8Array(16));
  assert.equal(ttlMs, 60_000);

  await t.step("a right proof, again and again", () => {
    const good = token(nonce, peerBinding(address));
    assert.equal(verifier.verify(good), undefined);
    assert.equal(verifier.verify(good), undefined);
  });

  await t.step("wrong ones, with why", () => {
    const cases: [string | undefined, RegExp, boolean][] = [
      [undefined, /^Missing node proof/, false],
      ["", /^Missing node proof/, false],
      [SECRET, /^Malformed node proof/, false],
      [token(nonce, peerBinding("10.0.0.3:8102")), /^Wrong node proof/, false],
      [token(nonce, REGISTER_BINDING), /^Wrong node proof/, false],
      [token(nonce, peerBinding(address), "other"), /^Wrong node proof/, false],
      [token("made-up", peerBinding(address)), /^Unknown nonce/, true],
    ];
    for (const [given, message, renew] of cases) {
      const refusal = verifier.verify(given);
      assert.equal(refusal?.error.code, "unauthenticated", String(given));
      assert.match(refusal!.error.message, message);
      assert.equal(refusal!.renew, renew);
    }
  });

  await t.step("a remembered proof expires with its nonce", () => {
    const good = token(nonce, peerBinding(address));
    time.at += 60_001;
    const refusal = verifier.verify(good);
    assert.match(refusal!.error.message, /^Expired nonce/);
    assert.equal(refusal!.renew, true);
  });

  await t.step("a caller's nonce of the wrong size is refused", () => {
    for (const size of [0, 15, 65]) {
      assert.throws(
        () => verifier.challenge(new Uint8Array(size)),
        (e) => e instanceof GatewayError && e.code === "invalid_argument",
      );
    }
  });
});

Deno.test("NodeCredentials.authorization() proves the secret, and only to a node that proves it back", async (t) => {
  const time = clock();
  const address = "10.0.0.2:8102";
  const callee = new NodeVerifier(SECRET, {
    binding: peerBinding(address),
    ttlMs: 60_000,
    now: time.now,
  });
  let challenges = 0;
  const credentials = (options: {
    callee?: NodeVerifier;
    secret?: string;
    allowUnsecured?: boolean;
  } = {}) =>
    new NodeCredentials({
      secret: options.secret ?? SECRET,
      binding: peerBinding(address),
      name: "the service",
      allowUnsecured: options.allowUnsecured ?? false,
      timeoutMs: 1000,
      now: time.now,
      // deno-lint-ignore require-await
      ask: async (clientNonce) => {
        challenges++;
        return options.callee === undefined
          ? { nonce: "", proof: "", ttlMs: 0 }
          : options.callee.challenge(clientNonce);
      },
    });

  const own = credentials({ callee });
  let first: string | undefined;

  await t.step(
    "one challenge for many calls, accepted by the callee",
    async () => {
      const values = await Promise.all([
        own.authorization(),
        own.authorization(),
        own.authorization(),
      ]);
      assert.equal(challenges, 1);
      assert.equal(new Set(values).size, 1);
      first = values[0];
      assert.equal(callee.verify(nodeTokenOf(first!)), undefined);
    },
  );

  await t.step(
    "a new nonce in the background after half its life",
    async () => {
      time.at += 30_001;
      assert.equal(await own.authorization(), first);
      await new Promise((resolve) => setTimeout(resolve, 0));
      assert.equal(challenges, 2);
      assert.notEqual(await own.authorization(), first);
    },
  );

  await t.step("a new one at once when told to renew", async () => {
    const current = await own.authorization();
    own.renew(current!);
    assert.notEqual(await own.authorization(), current);
    assert.equal(challenges, 3);
  });

  await t.step("a callee with another secret gets no proof", async () => {
    const stranger = new NodeVerifier("another", {
      binding: peerBinding(address),
    });
    await assert.rejects(
      credentials({ callee: stranger }).authorization(),
      (e) =>
        e instanceof GatewayError && e.code === "unauthenticated" &&
        /could not prove that it knows the cluster secret/.test(e.message),
    );
  });

  await t.step(
    "a callee for another address gets no proof either",
    async () => {
      const elsewhere = new NodeVerifier(SECRET, {
        binding: peerBinding("10.0.0.9:8102"),
      });
      await assert.rejects(
        credentials({ callee: elsewhere }).authorization(),
        /could not prove/,
      );
    },
  );

  await t.step(
    "a callee without a secret: refused, or let through for registers",
    async () => {
      await assert.rejects(
        credentials().authorization(),
        /runs without a secret, but this node has one/,
      );
      assert.equal(
        await credentials({ allowUnsecured: true }).authorization(),
        undefined,
      );
    },
  );
});
