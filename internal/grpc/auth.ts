// The shared secret between nodes: clients send it with every call, servers
// refuse calls without it.

import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/** The request header that carries the secret. */
export const AUTH_HEADER = "authorization";

/** The value of {@linkcode AUTH_HEADER} for `secret`. */
export function authValue(secret: string): string {
  return `Bearer ${secret}`;
}

/** Adds the secret to every call. */
export function clientAuth(secret: string): Interceptor {
  const value = authValue(secret);
  return (next) => (req) => {
    req.header.set(AUTH_HEADER, value);
    return next(req);
  };
}

/** Whether a given secret is `secret`, compared in constant time. */
export function secretMatcher(secret: string): (given: string) => boolean {
  const expected = digest(secret);
  return (given) => timingSafeEqual(digest(given), expected);
}

/**
 * Checks the {@linkcode AUTH_HEADER} of a call against `secret`: returns
 * the `unauthenticated` error to end the call with, or undefined when the
 * secret is right.
 */
export function secretChecker(
  secret: string,
): (header: string | null | undefined) => ConnectError | undefined {
  const matches = secretMatcher(authValue(secret));
  return (got) => {
    if (typeof got === "string" && matches(got)) return undefined;
    return new ConnectError(
      typeof got !== "string"
        ? "Missing secret: send `authorization: Bearer <secret>`"
        : "Wrong secret",
      Code.Unauthenticated,
    );
  };
}

/** Refuses calls that do not carry the secret, before any handler runs. */
export function serverAuth(secret: string): Interceptor {
  const check = secretChecker(secret);
  return (next) => (req) => {
    const refused = check(req.header.get(AUTH_HEADER));
    if (refused !== undefined) throw refused;
    return next(req);
  };
}

function digest(value: string): Uint8Array {
  return createHash("sha256").update(value).digest();
}
