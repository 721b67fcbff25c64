// What a WebSocket opening handshake request must be (RFC 6455, section
// 4.2.1), checked the same way wherever the service accepts one: on its
// own port and in the user's server.

/**
 * The request's `Sec-WebSocket-Key` when `request` is a valid opening
 * handshake, or the answer that refuses it (405, 400 or 426, with a body
 * that says what is wrong).
 */
export function checkHandshakeRequest(request: Request): string | Response {
  if (request.method !== "GET") return refuse(405, "use GET", { allow: "GET" });
  if (!/\bupgrade\b/i.test(request.headers.get("connection") ?? "")) {
    return refuse(400, "Connection: Upgrade is missing");
  }
  if (request.headers.get("sec-websocket-version") !== "13") {
    return refuse(426, "only version 13 is supported", {
      "sec-websocket-version": "13",
    });
  }
  const key = request.headers.get("sec-websocket-key") ?? "";
  if (!/^[A-Za-z0-9+/]{22}==$/.test(key)) {
    return refuse(400, "Sec-WebSocket-Key is not 16 bytes in base64");
  }
  return key;
}

function refuse(
  status: number,
  reason: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(`bad WebSocket upgrade: ${reason}\n`, {
    status,
    headers,
  });
}
