// A token bucket: the rate limit of one client's messages.

import type { RateLimit } from "../../application.ts";

/**
 * Holds up to `burst` tokens, refilled at `messagesPerSecond`; every
 * message takes one.
 */
export class TokenBucket {
  readonly #perMs: number;
  readonly #burst: number;
  #tokens: number;
  #at = 0;

  constructor(limit: RateLimit) {
    this.#perMs = limit.messagesPerSecond / 1000;
    this.#burst = limit.burst;
    this.#tokens = limit.burst;
  }

  /** Takes a token at time `now` (ms); false when there is none. */
  take(now: number): boolean {
    if (now > this.#at) {
      const refill = this.#at === 0 ? 0 : (now - this.#at) * this.#perMs;
      this.#tokens = Math.min(this.#burst, this.#tokens + refill);
      this.#at = now;
    }
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}
