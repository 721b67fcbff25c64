// Where client WebSockets arrive: the origin check, the handshake hook, the
// upgrade with its heartbeat, and the ClientConnection that takes over. The
// only user of Deno.upgradeWebSocket.

import { messageOf } from "../base/describe.ts";
import type { ClientInfo } from "../../api.ts";
import type {
  Application,
  Context,
  HandshakeAccept,
} from "../../application.ts";
import { ClientConnection } from "./client_connection.ts";
import type { ClientIdAllocator } from "../hub/client_id.ts";
import type { LocalHub } from "../hub/local_hub.ts";
import { errorText, type Logger } from "../base/logger.ts";
import type { ServiceMetrics } from "../ops/metrics.ts";
import { checkInfo } from "../api/validate.ts";

/** What the endpoint works with. */
export interface WebSocketEndpointOptions {
  readonly app: Application;
  /** What the hooks get: the Api and the service's identity. */
  readonly ctx: Context;
  readonly hub: LocalHub;
  readonly ids: ClientIdAllocator;
  readonly logger: Logger;
  readonly metrics: ServiceMetrics;
  /** A client silent this long is pinged, then closed; 0 turns it off. */
  readonly idleTimeoutMs: number;
  readonly maxBufferedBytes: number;
  readonly maxMessageBytes: number;
  /** Browser origins that may connect; undefined allows any. */
  readonly allowedOrigins: ReadonlySet<string> | undefined;
}

/** Accepts client WebSockets. */
export class WebSocketEndpoint {
  readonly #options: WebSocketEndpointOptions;
  readonly #connections = new Set<ClientConnection>();
  readonly #onFinished = (client: ClientConnection) =>
    this.#connections.delete(client);
  #accepting = false;

  constructor(options: WebSocketEndpointOptions) {
    this.#options = options;
  }

  /**
   * How many clients are not finished yet: open, closing, or with hooks
   * still running.
   */
  get size(): number {
    return this.#connections.size;
  }

  /** Whether `request` asks for a WebSocket. */
  static isUpgrade(request: Request): boolean {
    return request.headers.get("upgrade")?.toLowerCase() === "websocket";
  }

  /** Starts accepting clients. */
  open(): void {
    this.#accepting = true;
  }

  /** Refuses new clients from now on. */
  stopAccepting(): void {
    this.#accepting = false;
  }

  /** Checks `request`, asks the application, and upgrades it. */
  async upgrade(
    request: Request,
    remoteAddr: { readonly hostname: string; readonly port: number },
  ): Promise<Response> {
    if (!this.#accepting) return unavailable();
    const { app, logger, allowedOrigins } = this.#options;
    const origin = request.headers.get("origin");
    if (
      allowedOrigins !== undefined && origin !== null &&
      !allowedOrigins.has(origin)
    ) {
      logger.debug("refused a client from a foreign origin", { origin });
      return new Response("origin not allowed\n", { status: 403 });
    }
    let info: ClientInfo = {};
    if (app.onHandshake !== undefined) {
      try {
        const result = await app.onHandshake(request, {
          ...this.#options.ctx,
          remoteAddr,
        });
        if (result instanceof Response) return result;
        const accept = result as HandshakeAccept | undefined | null;
        if (typeof accept === "object" && accept?.info !== undefined) {
          info = {
            ...checkInfo(
              accept.info,
              "accept a client with the info from onHandshake",
            ),
          };
        }
      } catch (error) {
        logger.error("onHandshake failed", { error: errorText(error) });
        return new Response("internal error\n", { status: 500 });
      }
      if (!this.#accepting) return unavailable();
    }
    return this.#accept(request, info);
  }

  #accept(request: Request, info: ClientInfo): Response {
    const { ids, idleTimeoutMs } = this.#options;
    let upgraded: { socket: WebSocket; response: Response };
    try {
      upgraded = Deno.upgradeWebSocket(request, {
        idleTimeout: idleTimeoutMs / 1000,
      });
    } catch (error) {
      return new Response(`bad WebSocket upgrade: ${messageOf(error)}\n`, {
        status: 400,
      });
    }
    const client = new ClientConnection(
      ids.next(),
      upgraded.socket,
      request,
      info,
      { ...this.#options, onFinished: this.#onFinished },
    );
    this.#connections.add(client);
    return upgraded.response;
  }

  /** Refuses new clients and closes the open ones with `code`. */
  closeAll(code: number, reason: string): void {
    this.#accepting = false;
    for (const client of this.#connections) client.close(code, reason);
  }
}

function unavailable(): Response {
  return new Response("service is not accepting clients\n", {
    status: 503,
    headers: { "retry-after": "1" },
  });
}
