// The caller's side of node authentication (internal/base/node_proof.ts)
// on one channel: asks the node it dialed for a nonce, checks the node's
// own proof (a node that cannot prove the secret gets nothing more than the
// challenge), and keeps the `authorization` value for the calls that follow
// until the nonce is half-way to expiring; then it asks for a new one in
// the background while calls go on with the old one.

import { randomBytes } from "node:crypto";
import { GatewayError } from "../../errors.ts";
import {
  calleeProof,
  callerProof,
  CLIENT_NONCE_BYTES,
  formatNodeToken,
  NODE_PROOF_SCHEME,
  sameProof,
} from "../base/node_proof.ts";
import type { ChallengeAnswer } from "../base/node_verifier.ts";

/** Asks the node for a nonce, proving the secret over `clientNonce`. */
export type AskChallenge = (
  clientNonce: Uint8Array,
  signal: AbortSignal,
) => Promise<ChallengeAnswer>;

/** Options of {@linkcode NodeCredentials}. */
export interface NodeCredentialsOptions {
  readonly secret: string;
  /** What the proofs are bound to: peerBinding(address) or REGISTER_BINDING. */
  readonly binding: string;
  /** How the node is named in errors: `the service`, `the register`. */
  readonly name: string;
  /**
   * Whether a node without a secret may be called (without credentials):
   * true for registers, whose member lists say whom to dial but receive
   * nothing of the cluster's; never for peers.
   */
  readonly allowUnsecured: boolean;
  /** Called once when a node without a secret is let through. */
  readonly onUnsecured?: (() => void) | undefined;
  /** How long a challenge may take, in milliseconds. */
  readonly timeoutMs: number;
  readonly ask: AskChallenge;
  /**
   * The clock, in milliseconds.
   *
   * @default {Date.now}
   */
  readonly now?: (() => number) | undefined;
}

/** What goes in `authorization`, and until when. */
interface Held {
  /** Undefined when the node has no secret. */
  readonly value: string | undefined;
  /** Ask for a new nonce from then on, in the background. */
  readonly refreshAt: number;
  /** Stop using it then: wait for a new one. */
  readonly staleAt: number;
}

/** The node proofs of one channel. */
export class NodeCredentials {
  readonly #options: NodeCredentialsOptions;
  readonly #now: () => number;
  #held: Held | undefined;
  #asking: Promise<Held> | undefined;
  #warned = false;

  constructor(options: NodeCredentialsOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /**
   * The value of `authorization` for the next call: `WsgateNode
   * <nonce>.<proof>`, or undefined when the node has no secret (and may be
   * called without). Asks for a nonce first when none is held.
   *
   * @throws {GatewayError} `unauthenticated` when the node cannot prove
   * that it knows the secret; the challenge's failure (a ConnectError)
   * when it fails.
   */
  async authorization(signal?: AbortSignal): Promise<string | undefined> {
    const now = this.#now();
    const held = this.#held;
    if (held !== undefined && now < held.staleAt) {
      if (now >= held.refreshAt) this.#ask().catch(() => {});
      return held.value;
    }
    const asking = this.#ask();
    if (signal === undefined) return (await asking).value;
    signal.throwIfAborted();
    let onAbort: (() => void) | undefined;
    try {
      return (await Promise.race([
        asking,
        new Promise<never>((_, reject) => {
          onAbort = () => reject(signal.reason);
          signal.addEventListener("abort", onAbort, { once: true });
        }),
      ])).value;
    } finally {
      if (onAbort !== undefined) signal.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Forgets `value` after the node refused it as expired or unknown: the
   * next call asks for a new nonce.
   */
  renew(value: string): void {
    if (this.#held?.value === value) this.#held = undefined;
  }

  #ask(): Promise<Held> {
    return this.#asking ??= this.#challenge().then(
      (held) => {
        this.#asking = undefined;
        this.#held = held;
        return held;
      },
      (error) => {
        this.#asking = undefined;
        throw error;
      },
    );
  }

  async #challenge(): Promise<Held> {
    const { secret, binding, name, timeoutMs } = this.#options;
    const clientNonce = randomBytes(CLIENT_NONCE_BYTES.min);
    const asked = this.#now();
    const answer = await this.#options.ask(
      clientNonce,
      AbortSignal.timeout(timeoutMs),
    );
    if (answer.nonce === "") {
      if (!this.#options.allowUnsecured) {
        throw new GatewayError(
          "unauthenticated",
          `${name} runs without a secret, but this node has one; give every register and service the same secret`,
        );
      }
      if (!this.#warned) {
        this.#warned = true;
        this.#options.onUnsecured?.();
      }
      // Ask again now and then: the node may get a secret.
      return { value: undefined, refreshAt: asked + 60_000, staleAt: Infinity };
    }
    if (!sameProof(answer.proof, calleeProof(secret, clientNonce, binding))) {
      throw new GatewayError(
        "unauthenticated",
        `${name} could not prove that it knows the cluster secret (it has another secret, or it is not the node this one meant to dial)`,
      );
    }
    const proof = callerProof(secret, answer.nonce, binding);
    const ttl = answer.ttlMs;
    return {
      value: `${NODE_PROOF_SCHEME} ${
        formatNodeToken({ nonce: answer.nonce, proof })
      }`,
      refreshAt: asked + ttl / 2,
      // A margin for the time the answer took and calls take to arrive.
      staleAt: asked + ttl - Math.min(10_000, ttl / 4),
    };
  }
}
