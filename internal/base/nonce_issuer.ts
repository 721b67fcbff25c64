// Nonces that a node hands to whoever asks, without remembering them: each
// carries the time it was made and random bytes, signed with a key that
// only this process knows. Checking one takes an HMAC and no memory, so
// strangers who ask for a million nonces fill nothing; a nonce is good
// until it is `ttlMs` old, and only in the process that made it.

import { Buffer } from "node:buffer";
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/** How long a nonce stays good, by default: two minutes. */
export const NONCE_TTL_MS = 120_000;

const TIME_BYTES = 8;
const RANDOM_BYTES = 12;
const MAC_BYTES = 16;
const NONCE_BYTES = TIME_BYTES + RANDOM_BYTES + MAC_BYTES;

/** What {@linkcode NonceIssuer.check} finds. */
export type NonceCheck = "good" | "expired" | "unknown";

/** Options of {@linkcode NonceIssuer}. */
export interface NonceIssuerOptions {
  /**
   * How long a nonce stays good, in milliseconds.
   *
   * @default {120000}
   */
  readonly ttlMs?: number;
  /**
   * The clock, in milliseconds.
   *
   * @default {Date.now}
   */
  readonly now?: () => number;
}

/** Makes and checks the nonces of one process. */
export class NonceIssuer {
  /** How long a nonce stays good, in milliseconds. */
  readonly ttlMs: number;
  readonly #key = randomBytes(32);
  readonly #now: () => number;

  constructor(options: NonceIssuerOptions = {}) {
    const { ttlMs = NONCE_TTL_MS, now = Date.now } = options;
    if (!Number.isInteger(ttlMs) || ttlMs <= 0) {
      throw new RangeError(
        `Cannot make nonces: 'ttlMs' must be a positive integer: current value is ${ttlMs}`,
      );
    }
    this.ttlMs = ttlMs;
    this.#now = now;
  }

  /** A fresh nonce: unpadded base64url, 48 characters. */
  issue(): string {
    const nonce = Buffer.alloc(NONCE_BYTES);
    nonce.writeBigUInt64BE(BigInt(this.#now()), 0);
    randomBytes(RANDOM_BYTES).copy(nonce, TIME_BYTES);
    this.#mac(nonce.subarray(0, TIME_BYTES + RANDOM_BYTES))
      .copy(nonce, TIME_BYTES + RANDOM_BYTES);
    return nonce.toString("base64url");
  }

  /**
   * Whether `nonce` is one of this process's and still good: `"expired"`
   * when it is too old, `"unknown"` when this process did not make it (it
   * was made by another process, maybe one that ran at the same address
   * before, or it is forged).
   */
  check(nonce: string): NonceCheck {
    if (nonce.length !== Math.ceil(NONCE_BYTES * 4 / 3)) return "unknown";
    const bytes = Buffer.from(nonce, "base64url");
    if (bytes.length !== NONCE_BYTES) return "unknown";
    const signed = bytes.subarray(0, TIME_BYTES + RANDOM_BYTES);
    if (!timingSafeEqual(bytes.subarray(signed.length), this.#mac(signed))) {
      return "unknown";
    }
    const age = this.#now() - Number(bytes.readBigUInt64BE(0));
    return age >= 0 && age <= this.ttlMs ? "good" : "expired";
  }

  /** When a good `nonce` expires, in the clock of `now`. */
  expiresAt(nonce: string): number {
    const made = Number(Buffer.from(nonce, "base64url").readBigUInt64BE(0));
    return made + this.ttlMs;
  }

  #mac(bytes: Uint8Array): Buffer {
    return createHmac("sha256", this.#key).update(bytes).digest().subarray(
      0,
      MAC_BYTES,
    );
  }
}
