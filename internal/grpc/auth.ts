// Node proofs on the gRPC calls a node makes: each call carries the
// channel's `authorization: WsgateNode <nonce>.<proof>`
// (node_credentials.ts), never the secret. A call refused because its
// nonce expired or the callee restarted is made once more with a new one.
// Servers check callers in rpc_server.ts, before any body byte is read.

import { ConnectError, type Interceptor } from "npm:@connectrpc/connect@2.2.0";
import { createAsyncIterable } from "npm:@connectrpc/connect@2.2.0/protocol";
import { NodeAuthService } from "../../proto/gen/websocket/v1/node_auth_pb.ts";
import { AUTH_HEADER } from "../base/secret.ts";
import type { NodeCredentials } from "./node_credentials.ts";
import { toConnectError } from "./grpc_status.ts";
import { RENEW, RENEW_HEADER } from "./rpc_auth.ts";

/** Adds the channel's node proof to every call but the challenge. */
export function clientAuth(credentials: NodeCredentials): Interceptor {
  return (next) => async (req) => {
    if (req.service.typeName === NodeAuthService.typeName) {
      return await next(req);
    }
    const value = await authorization(credentials, req.signal);
    if (value === undefined) return await next(req);
    // Calls whose requests can be sent again: unary and server streaming
    // (one request message, kept for a second try).
    const kind = req.method.methodKind;
    const replayable = kind === "unary" || kind === "server_streaming";
    const messages = replayable && req.stream ? await collect(req.message) : [];
    const attempt = (authorization: string) => {
      req.header.set(AUTH_HEADER, authorization);
      return req.stream && replayable
        ? next({ ...req, message: createAsyncIterable(messages) })
        : next(req);
    };
    try {
      return await attempt(value);
    } catch (error) {
      if (!replayable || !mustRenew(error)) throw error;
      credentials.renew(value);
      const renewed = await authorization(credentials, req.signal);
      if (renewed === undefined) throw error;
      return await attempt(renewed);
    }
  };
}

/** The channel's proof; a failure to get one fails the call with its code. */
async function authorization(
  credentials: NodeCredentials,
  signal: AbortSignal,
): Promise<string | undefined> {
  try {
    return await credentials.authorization(signal);
  } catch (error) {
    throw toConnectError(error);
  }
}

/** Whether a call failed because the callee wants a new nonce. */
export function mustRenew(error: unknown): boolean {
  return error instanceof ConnectError &&
    error.metadata.get(RENEW_HEADER) === RENEW;
}

async function collect<T>(messages: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const message of messages) all.push(message);
  return all;
}
