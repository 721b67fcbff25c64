// Where client WebSockets arrive: the upgrade, the clientId, registration in
// the hub, and the application's hooks. The only user of
// Deno.upgradeWebSocket.

import type { Api } from "../api.ts";
import type { Application, Context } from "../application.ts";
import { ClientConnection } from "./client_connection.ts";
import type { ClientIdAllocator } from "./client_id.ts";
import type { LocalHub } from "./local_hub.ts";
import type { Logger } from "./logger.ts";
import { payloadSize, type ServiceMetrics } from "./metrics.ts";

/** What the endpoint works with. */
export interface WebSocketEndpointOptions {
  readonly app: Application;
  readonly api: Api;
  readonly hub: LocalHub;
  readonly ids: ClientIdAllocator;
  readonly logger: Logger;
  readonly metrics: ServiceMetrics;
}

/** Accepts client WebSockets. */
export class WebSocketEndpoint {
  readonly #options: WebSocketEndpointOptions;
  readonly #ctx: Context;
  readonly #connections = new Set<ClientConnection>();
  #closing = false;

  constructor(options: WebSocketEndpointOptions) {
    this.#options = options;
    this.#ctx = { api: options.api };
  }

  /** How many sockets are open (registered or not yet). */
  get size(): number {
    return this.#connections.size;
  }

  /** Whether `request` asks for a WebSocket. */
  static isUpgrade(request: Request): boolean {
    return request.headers.get("upgrade")?.toLowerCase() === "websocket";
  }

  /** Upgrades `request` and wires the new client. */
  upgrade(request: Request): Response {
    if (this.#closing) {
      return new Response("service is shutting down\n", { status: 503 });
    }
    const { app, api, hub, ids, logger, metrics } = this.#options;
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.binaryType = "arraybuffer";
    const client = new ClientConnection(
      ids.next(),
      socket,
      app,
      this.#ctx,
      logger,
      metrics,
    );
    this.#connections.add(client);
    let registered = false;
    socket.onopen = () => {
      registered = true;
      metrics.connectionsOpened++;
      hub.add(client.id, client);
      logger.debug("client connected", { clientId: client.id });
      client.dispatch({ kind: "connect", ctx: { api, request } });
    };
    socket.onmessage = (event) => {
      const data = event.data;
      const message = typeof data === "string" ? data : new Uint8Array(data);
      metrics.messagesIn++;
      metrics.bytesIn += payloadSize(message);
      client.dispatch({ kind: "message", message });
    };
    socket.onclose = (event) => {
      this.#connections.delete(client);
      if (!registered) return;
      registered = false;
      metrics.connectionsClosed++;
      hub.remove(client.id);
      logger.debug("client closed", {
        clientId: client.id,
        code: event.code,
      });
      client.dispatch({ kind: "close" });
    };
    socket.onerror = () => {
      // A close event follows.
    };
    return response;
  }

  /** Refuses new clients and closes the open ones with `code`. */
  closeAll(code: number, reason: string): void {
    this.#closing = true;
    for (const client of this.#connections) client.close(code, reason);
  }
}
