// The shared secret between nodes: clients send it with every call, servers
// refuse calls without it.

import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

const HEADER = "authorization";

/** Adds the secret to every call. */
export function clientAuth(secret: string): Interceptor {
  const value = `Bearer ${secret}`;
  return (next) => (req) => {
    req.header.set(HEADER, value);
    return next(req);
  };
}

/** Refuses calls that do not carry the secret, before any handler runs. */
export function serverAuth(secret: string): Interceptor {
  const expected = digest(`Bearer ${secret}`);
  return (next) => (req) => {
    const got = req.header.get(HEADER);
    if (got === null || !timingSafeEqual(digest(got), expected)) {
      throw new ConnectError(
        got === null
          ? "Missing secret: send `authorization: Bearer <secret>`"
          : "Wrong secret",
        Code.Unauthenticated,
      );
    }
    return next(req);
  };
}

function digest(value: string): Uint8Array {
  return createHash("sha256").update(value).digest();
}
