// The callee's side of node authentication (node_proof.ts): it answers
// challenges with a fresh nonce and its own proof, and checks the proofs
// that callers send with their calls, on gRPC and on the delivery port
// alike. Proofs that checked out are remembered (a few, until their nonce
// expires), so that a caller that sends the same one on every call costs a
// map lookup, not two HMACs.

import { GatewayError } from "../../errors.ts";
import {
  calleeProof,
  callerProof,
  CLIENT_NONCE_BYTES,
  NODE_PROOF_SCHEME,
  parseNodeToken,
  peerBinding,
  sameProof,
} from "./node_proof.ts";
import { NonceIssuer, type NonceIssuerOptions } from "./nonce_issuer.ts";

/** Proofs remembered as good, at most; the oldest is forgotten first. */
const MAX_REMEMBERED = 1024;

/** What a callee answers a challenge with. */
export interface ChallengeAnswer {
  readonly nonce: string;
  readonly proof: string;
  readonly ttlMs: number;
}

/**
 * Why {@linkcode NodeVerifier.verify} refused a proof; `renew` when the
 * caller should ask for a new nonce and try once more.
 */
export interface ProofRefusal {
  readonly error: GatewayError;
  readonly renew: boolean;
}

/** Options of {@linkcode NodeVerifier}. */
export interface NodeVerifierOptions extends NonceIssuerOptions {
  /**
   * What proofs must be bound to: REGISTER_BINDING for a register; unset
   * for a service until {@linkcode NodeVerifier.bindTo} names its address.
   */
  readonly binding?: string | undefined;
}

/** Checks that callers know the cluster secret. */
export class NodeVerifier {
  readonly #secret: string;
  readonly #nonces: NonceIssuer;
  readonly #now: () => number;
  #binding: string | undefined;
  /** Tokens that checked out, with when their nonce expires. */
  readonly #good = new Map<string, number>();

  constructor(secret: string, options: NodeVerifierOptions = {}) {
    this.#secret = secret;
    this.#nonces = new NonceIssuer(options);
    this.#now = options.now ?? Date.now;
    this.#binding = options.binding;
  }

  /** What proofs must be bound to; undefined until it is known. */
  get binding(): string | undefined {
    return this.#binding;
  }

  /** Binds proofs to `address`, the RPC address this service announces. */
  bindTo(address: string): void {
    this.#binding = peerBinding(address);
    this.#good.clear();
  }

  /**
   * A fresh nonce, and this node's proof over the caller's nonce.
   *
   * @throws {GatewayError} `invalid_argument` for a caller's nonce of the
   * wrong size, `unavailable` before the binding is known.
   */
  challenge(clientNonce: Uint8Array): ChallengeAnswer {
    const { min, max } = CLIENT_NONCE_BYTES;
    if (clientNonce.length < min || clientNonce.length > max) {
      throw new GatewayError(
        "invalid_argument",
        `Cannot answer the challenge: client_nonce must have ${min} to ${max} bytes: it has ${clientNonce.length}`,
      );
    }
    const binding = this.#bound();
    return {
      nonce: this.#nonces.issue(),
      proof: calleeProof(this.#secret, clientNonce, binding),
      ttlMs: this.#nonces.ttlMs,
    };
  }

  /**
   * Checks the token (`nonce.proof`) of a call or a delivery connection:
   * undefined when it proves the secret for this node, else why not.
   */
  verify(token: string | undefined): ProofRefusal | undefined {
    if (token === undefined || token === "") {
      return refused(
        'Missing node proof: this node has a cluster secret; give the caller the same secret (see "Node authentication" in the README)',
      );
    }
    const until = this.#good.get(token);
    if (until !== undefined && this.#now() <= until) return undefined;
    const parsed = parseNodeToken(token);
    if (parsed === undefined) {
      return refused(
        `Malformed node proof: expected \`${NODE_PROOF_SCHEME} <nonce>.<proof>\``,
      );
    }
    const binding = this.#binding;
    if (binding === undefined) {
      return {
        error: new GatewayError("unavailable", "This node is still starting"),
        renew: false,
      };
    }
    const state = this.#nonces.check(parsed.nonce);
    if (state === "expired") {
      this.#good.delete(token);
      return refused("Expired nonce: ask for a new challenge", true);
    }
    if (state === "unknown") {
      return refused(
        "Unknown nonce: this process did not make it (the node restarted, or the nonce is another node's); ask for a new challenge",
        true,
      );
    }
    const expected = callerProof(this.#secret, parsed.nonce, binding);
    if (!sameProof(parsed.proof, expected)) {
      return refused(
        `Wrong node proof: the caller has another secret, or made the proof for another node than this one (${binding})`,
      );
    }
    if (this.#good.size >= MAX_REMEMBERED) {
      this.#good.delete(this.#good.keys().next().value!);
    }
    this.#good.set(token, this.#nonces.expiresAt(parsed.nonce));
    return undefined;
  }

  #bound(): string {
    if (this.#binding === undefined) {
      throw new GatewayError("unavailable", "This node is still starting");
    }
    return this.#binding;
  }
}

function refused(message: string, renew = false): ProofRefusal {
  return { error: new GatewayError("unauthenticated", message), renew };
}
