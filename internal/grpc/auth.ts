// The cluster's shared secret on gRPC calls: clients send it with every
// call, servers refuse calls without it before any handler runs.

import type { Interceptor } from "@connectrpc/connect";
import { AUTH_HEADER, authValue, bearerChecker } from "../base/secret.ts";
import { toConnectError } from "./grpc_status.ts";

/** Adds the secret to every call. */
export function clientAuth(secret: string): Interceptor {
  const value = authValue(secret);
  return (next) => (req) => {
    req.header.set(AUTH_HEADER, value);
    return next(req);
  };
}

/** Refuses calls that do not carry the secret, before any handler runs. */
export function serverAuth(secret: string): Interceptor {
  const check = bearerChecker(secret);
  return (next) => (req) => {
    const refused = check(req.header.get(AUTH_HEADER));
    if (refused !== undefined) throw toConnectError(refused);
    return next(req);
  };
}
