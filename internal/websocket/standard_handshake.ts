// The opening handshake in the user's own server: the request is checked
// as on the service's own port, then upgraded with Deno.upgradeWebSocket
// (the one place that calls it), whose idleTimeout is the heartbeat.

import { checkHandshakeRequest } from "./handshake_request.ts";
import {
  StandardSocket,
  type StandardSocketOptions,
} from "./standard_socket.ts";

/** Options of {@linkcode upgradeStandardWebSocket}. */
export interface StandardUpgradeOptions extends StandardSocketOptions {
  /**
   * A client silent for half of this is pinged, and closed with 1001 when
   * nothing, not even the pong, arrived for this long, in milliseconds; 0
   * turns it off.
   */
  readonly idleTimeoutMs: number;
  /**
   * The subprotocol the 101 selects, one that the client offered;
   * undefined selects none.
   */
  readonly protocol?: string | undefined;
}

/**
 * Accepts a WebSocket upgrade that a `Deno.serve` handler received:
 * returns the socket (open once the answer is sent) and the 101 answer the
 * handler must return, or the answer that refuses a request that is not a
 * valid handshake.
 */
export function upgradeStandardWebSocket(
  request: Request,
  options: StandardUpgradeOptions,
): { socket: StandardSocket; response: Response } | Response {
  const key = checkHandshakeRequest(request);
  if (key instanceof Response) return key;
  let upgraded: { socket: WebSocket; response: Response };
  try {
    upgraded = Deno.upgradeWebSocket(request, {
      idleTimeout: options.idleTimeoutMs / 1000,
      ...(options.protocol === undefined ? {} : { protocol: options.protocol }),
    });
  } catch (error) {
    throw new TypeError(
      "Cannot upgrade the request to a WebSocket: pass service.handler the Request that Deno.serve gave the handler, unread",
      { cause: error },
    );
  }
  return {
    socket: new StandardSocket(upgraded.socket, options),
    response: upgraded.response,
  };
}
