// Resume tokens: `<clientId>.<base64url of 18 random bytes>`. The clientId
// part names the session (and through it the service that holds it); the
// random part (144 bits) proves the client's right to it, compared in
// constant time.

import { Buffer } from "node:buffer";
import { randomBytes, timingSafeEqual } from "node:crypto";

/** Random bytes in a token: 144 bits, 24 base64url characters. */
const RANDOM_BYTES = 18;

/** A fresh token for the session of `clientId`. */
export function issueToken(clientId: string): string {
  return `${clientId}.${randomBytes(RANDOM_BYTES).toString("base64url")}`;
}

/**
 * The clientId a token names, or undefined when `token` is not shaped
 * like one. Says nothing about whether the token is valid.
 */
export function tokenClientId(token: string): string | undefined {
  const dot = token.lastIndexOf(".");
  if (dot < 1 || token.length - dot - 1 !== 24 || token.length > 128) {
    return undefined;
  }
  return token.slice(0, dot);
}

const DUMMY = Buffer.from(issueToken("000000000000.0"));

/**
 * Whether `given` is `expected`, in time that depends on their lengths
 * only; with `expected` undefined (no such session), a comparison with a
 * dummy of a token's length runs anyway and the answer is false.
 */
export function tokenMatches(
  expected: string | undefined,
  given: string,
): boolean {
  const a = Buffer.from(given);
  const b = expected === undefined ? DUMMY : Buffer.from(expected);
  if (a.length !== b.length) {
    timingSafeEqual(DUMMY, DUMMY);
    return false;
  }
  return timingSafeEqual(a, b) && expected !== undefined;
}
