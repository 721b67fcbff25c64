// What a service's WebSocket port (or its handler in the user's own
// server) answers, in order: WebSocket upgrades (any path), the operator
// endpoints (/healthz, /metrics), the HTTP API (/api/*, when turned on),
// then the application's own `fetch` handler.

import { isWebSocketRequest } from "../websocket/handshake.ts";
import { opsResponse, type OpsSource } from "../ops/ops_http.ts";
import { HTTP_API_PREFIX, type HttpApiHandler } from "../ops/http_api.ts";

/**
 * Options of {@linkcode createServiceHandler}; `Info` is what the server
 * tells about a request's connection.
 */
export interface ServiceHandlerOptions<Info> {
  /** Upgrades a WebSocket request (see WebSocketEndpoint). */
  readonly upgrade: (request: Request, info: Info) => Promise<Response>;
  readonly ops: OpsSource;
  /** The HTTP API, or undefined when it is off. */
  readonly httpApi: HttpApiHandler | undefined;
  /** The application's handler for every other request. */
  readonly fetch:
    | ((request: Request) => Response | Promise<Response>)
    | undefined;
}

/** Makes the request handler of a service's WebSocket port. */
export function createServiceHandler<Info>(
  options: ServiceHandlerOptions<Info>,
): (request: Request, info: Info) => Response | Promise<Response> {
  const { upgrade, ops, httpApi, fetch } = options;
  return function handleServiceRequest(request, info) {
    if (isWebSocketRequest(request)) return upgrade(request, info);
    const builtIn = opsResponse(request, ops);
    if (builtIn !== undefined) return builtIn;
    if (
      httpApi !== undefined &&
      new URL(request.url).pathname.startsWith(HTTP_API_PREFIX)
    ) {
      return httpApi(request);
    }
    if (fetch !== undefined) return fetch(request);
    return upgradeRequired();
  };
}

/** What a service answers a plain request that no `fetch` takes. */
export function upgradeRequired(): Response {
  return new Response(
    "This is a wsgate service: connect with a WebSocket.\n",
    { status: 426, headers: { upgrade: "websocket" } },
  );
}
