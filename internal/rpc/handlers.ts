// What the handlers of GatewayService's Api methods look like: one
// function per RPC, from a decoded request to the response to send.

import type { Fields } from "../api/codecs.ts";
import {
  type ApiMethod,
  argCodecsOf,
  METHOD_NAMES,
  METHODS,
  type RpcMethod,
} from "../api/method_table.ts";

/** Answers one RPC. */
export type RpcHandler = (request: Fields) => Fields | Promise<Fields>;

/** A handler for every RPC that carries an Api method. */
export type RpcHandlers = Record<RpcMethod, RpcHandler>;

/**
 * Makes a handler for each RPC from `handle`, which gets the Api method it
 * carries and the request's arguments, read by the table's codecs. Old
 * names of a method (`aliasOf`) share its RPC and are skipped.
 */
export function handlersOf(
  handle: (method: ApiMethod, args: unknown[]) => unknown,
): RpcHandlers {
  const handlers = {} as RpcHandlers;
  for (const method of METHOD_NAMES) {
    const spec = METHODS[method];
    if (spec.aliasOf !== undefined) continue;
    const codecs = argCodecsOf(method);
    const toResponse = spec.result.toResponse as (value: unknown) => Fields;
    handlers[spec.rpc] = (request) => {
      const args = codecs.map((codec) => codec.fromRequest(request));
      const result = handle(method, args);
      return result instanceof Promise
        ? result.then(toResponse)
        : toResponse(result);
    };
  }
  return handlers;
}
