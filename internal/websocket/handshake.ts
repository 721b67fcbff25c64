// The server's side of the WebSocket opening handshake (RFC 6455, section
// 4.2), on the HTTP server of internal/http/: the request is checked, the
// 101 answer made, and the connection handed to a ServerWebSocket once the
// answer is written.

import { createHash } from "node:crypto";
import type { ConnectionInfo } from "../http/http_server.ts";
import {
  ServerWebSocket,
  type ServerWebSocketOptions,
} from "./server_socket.ts";
import { checkHandshakeRequest } from "./handshake_request.ts";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** Whether `request` asks for a WebSocket. */
export function isWebSocketRequest(request: Request): boolean {
  return /\bwebsocket\b/i.test(request.headers.get("upgrade") ?? "");
}

/** Options of {@linkcode upgradeWebSocket}. */
export interface UpgradeOptions extends ServerWebSocketOptions {
  /**
   * The subprotocol the 101 selects (`Sec-WebSocket-Protocol`), one that
   * the client offered; undefined selects none.
   */
  readonly protocol?: string | undefined;
}

/**
 * Accepts a WebSocket upgrade: returns the socket (open once the answer is
 * written) and the 101 answer to return from the handler, or the answer
 * that refuses a request that is not a valid handshake.
 */
export function upgradeWebSocket(
  request: Request,
  info: ConnectionInfo,
  options: UpgradeOptions,
): { socket: ServerWebSocket; response: Response } | Response {
  const key = checkHandshakeRequest(request);
  if (key instanceof Response) return key;
  const accept = createHash("sha1").update(key + GUID).digest("base64");
  const headers: Record<string, string> = {
    upgrade: "websocket",
    "sec-websocket-accept": accept,
  };
  if (options.protocol !== undefined) {
    headers["sec-websocket-protocol"] = options.protocol;
  }
  const response = new Response(null, { status: 101, headers });
  const socket = new ServerWebSocket(options);
  info.takeOver(response).then(
    ({ conn, rest }) => socket.attach(conn, rest),
    () => socket.close(1006, "the handshake failed"),
  );
  return { socket, response };
}
