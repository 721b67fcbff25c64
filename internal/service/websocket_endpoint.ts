// Where client WebSockets arrive: the origin check, the handshake hook, the
// upgrade (internal/websocket/) with its heartbeat, and the ClientConnection
// that takes over.

import type { ClientInfo } from "../../api.ts";
import type {
  Application,
  Context,
  HandshakeAccept,
  RateLimit,
} from "../../application.ts";
import type { ConnectionInfo } from "../http/http_server.ts";
import { upgradeWebSocket } from "../websocket/handshake.ts";
import { FrameEncoder } from "../websocket/frames.ts";
import { Heartbeat } from "../websocket/heartbeat.ts";
import type { ServerWebSocket } from "../websocket/server_socket.ts";
import { checkRateLimit } from "./service_options.ts";
import {
  ClientConnection,
  GOING_AWAY as GOING_AWAY_CODE,
} from "./client_connection.ts";
import type { ClientIdAllocator } from "../hub/client_id.ts";
import type { LocalHub } from "../hub/local_hub.ts";
import { errorText, type Logger } from "../base/logger.ts";
import type { ServiceMetrics } from "../ops/metrics.ts";
import { checkInfo } from "../api/validate.ts";
import type { InfoBounds } from "../hub/info_size.ts";

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
  /** Every client's rate limit unless onHandshake gives it another. */
  readonly rateLimit: RateLimit | undefined;
  readonly maxQueuedMessages: number;
  /** Browser origins that may connect; undefined allows any. */
  readonly allowedOrigins: ReadonlySet<string> | undefined;
  /** Bounds of the info map that onHandshake gives a client. */
  readonly infoBounds: InfoBounds;
}

/** How long a close handshake may take before the connection is cut. */
const CLOSE_TIMEOUT_MS = 5000;

/** Accepts client WebSockets. */
export class WebSocketEndpoint implements Disposable {
  readonly #options: WebSocketEndpointOptions;
  readonly #connections = new Map<ClientConnection, ServerWebSocket>();
  readonly #frames = new FrameEncoder();
  readonly #heartbeat: Heartbeat | undefined;
  readonly #onFinished = (client: ClientConnection) => {
    const socket = this.#connections.get(client);
    if (socket !== undefined) this.#heartbeat?.delete(socket);
    this.#connections.delete(client);
  };
  #accepting = false;

  constructor(options: WebSocketEndpointOptions) {
    this.#options = options;
    this.#heartbeat = options.idleTimeoutMs === 0
      ? undefined
      : new Heartbeat(options.idleTimeoutMs);
  }

  /**
   * How many clients are not finished yet: open, closing, or with hooks
   * still running.
   */
  get size(): number {
    return this.#connections.size;
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
  async upgrade(request: Request, info: ConnectionInfo): Promise<Response> {
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
    let clientInfo: ClientInfo = {};
    let rateLimit = this.#options.rateLimit;
    if (app.onHandshake !== undefined) {
      try {
        const result = await app.onHandshake(request, {
          ...this.#options.ctx,
          remoteAddr: info.remoteAddr,
        });
        if (result instanceof Response) return result;
        const accept = result as HandshakeAccept | undefined | null;
        if (typeof accept === "object" && accept !== null) {
          if (accept.info !== undefined) {
            clientInfo = {
              ...checkInfo(
                accept.info,
                "accept a client with the info from onHandshake",
                this.#options.infoBounds,
              ),
            };
          }
          if (accept.rateLimit !== undefined) {
            rateLimit = accept.rateLimit === false ? undefined : checkRateLimit(
              "accept a client with the rateLimit from onHandshake",
              accept.rateLimit,
            );
          }
        }
      } catch (error) {
        logger.error("onHandshake failed", { error: errorText(error) });
        return new Response("internal error\n", { status: 500 });
      }
      if (!this.#accepting) return unavailable();
    }
    return this.#accept(request, info, clientInfo, rateLimit);
  }

  #accept(
    request: Request,
    connection: ConnectionInfo,
    info: ClientInfo,
    rateLimit: RateLimit | undefined,
  ): Response {
    const upgraded = upgradeWebSocket(request, connection, {
      maxMessageBytes: this.#options.maxMessageBytes,
      frames: this.#frames,
      closeTimeoutMs: CLOSE_TIMEOUT_MS,
    });
    if (upgraded instanceof Response) return upgraded;
    const client = new ClientConnection(
      this.#options.ids.next(),
      upgraded.socket,
      request,
      info,
      { ...this.#options, rateLimit, onFinished: this.#onFinished },
    );
    this.#connections.set(client, upgraded.socket);
    this.#heartbeat?.add(upgraded.socket);
    return upgraded.response;
  }

  /** Refuses new clients and closes the open ones with `code`. */
  closeAll(code: number, reason: string): void {
    this.#accepting = false;
    for (const client of this.#connections.keys()) client.close(code, reason);
  }

  /**
   * Cuts off the sockets still closing (dead or stuck clients) and stops
   * the heartbeat.
   */
  cutOff(): void {
    for (const socket of this.#connections.values()) {
      socket.terminate(GOING_AWAY_CODE, "service is going away");
    }
    this[Symbol.dispose]();
  }

  /** Stops the heartbeat. */
  [Symbol.dispose](): void {
    this.#heartbeat?.[Symbol.dispose]();
  }
}

function unavailable(): Response {
  return new Response("service is not accepting clients\n", {
    status: 503,
    headers: { "retry-after": "1" },
  });
}
