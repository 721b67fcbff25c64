// Secrets sent as bearer tokens, `authorization: Bearer <secret>`, and
// compared in constant time: the HTTP API's, and the cluster's as backends
// send it to a service or a register. Nodes never send the cluster secret:
// they prove it (node_proof.ts).

import { createHash, timingSafeEqual } from "node:crypto";
import { GatewayError } from "../../errors.ts";

/** The request header that carries a secret. */
export const AUTH_HEADER = "authorization";

/** The value of {@linkcode AUTH_HEADER} for `secret`. */
export function authValue(secret: string): string {
  return `Bearer ${secret}`;
}

/** Whether a given secret is `secret`, compared in constant time. */
export function secretMatcher(secret: string): (given: string) => boolean {
  const expected = digest(secret);
  return (given) => timingSafeEqual(digest(given), expected);
}

/**
 * Checks an {@linkcode AUTH_HEADER} value against `secret`: returns the
 * `unauthenticated` error to refuse the request with, or undefined when the
 * secret is right.
 */
export function bearerChecker(
  secret: string,
): (header: string | null | undefined) => GatewayError | undefined {
  const matches = secretMatcher(authValue(secret));
  return (got) => {
    if (typeof got === "string" && matches(got)) return undefined;
    return new GatewayError(
      "unauthenticated",
      typeof got !== "string"
        ? "Missing secret: send `Authorization: Bearer <secret>`"
        : "Wrong secret",
    );
  };
}

function digest(value: string): Uint8Array {
  return createHash("sha256").update(value).digest();
}
