// Where client WebSockets arrive: the origin check, the handshake hook, the
// upgrade (internal/websocket/) with its heartbeat, and the ClientConnection
// that takes over. Two ways in share all of it but the upgrade: the
// service's own port (ServerWebSocket, framed here, with the Heartbeat) and
// the user's own server (StandardSocket over Deno.upgradeWebSocket, whose
// idleTimeout is the heartbeat).

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
import type { AcceptedSocket } from "../websocket/accepted_socket.ts";
import { upgradeStandardWebSocket } from "../websocket/standard_handshake.ts";
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

/** A socket that one way in accepted, and what its client's end undoes. */
interface Accepted {
  readonly socket: AcceptedSocket;
  readonly response: Response;
  readonly release?: () => void;
}

/** The client address that the hooks see, from any address Deno reports. */
type RemoteAddress = { readonly hostname: string; readonly port: number };

/** Accepts client WebSockets. */
export class WebSocketEndpoint implements Disposable {
  readonly #options: WebSocketEndpointOptions;
  readonly #connections = new Map<ClientConnection, Accepted>();
  readonly #frames = new FrameEncoder();
  readonly #heartbeat: Heartbeat | undefined;
  readonly #onFinished = (client: ClientConnection) => {
    this.#connections.get(client)?.release?.();
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

  /**
   * Checks `request` of the service's own port, asks the application, and
   * upgrades it.
   */
  upgrade(request: Request, info: ConnectionInfo): Promise<Response> {
    return this.#admit(request, info.remoteAddr, () => {
      const upgraded = upgradeWebSocket(request, info, {
        maxMessageBytes: this.#options.maxMessageBytes,
        frames: this.#frames,
        closeTimeoutMs: CLOSE_TIMEOUT_MS,
      });
      const heartbeat = this.#heartbeat;
      if (upgraded instanceof Response || heartbeat === undefined) {
        return upgraded;
      }
      heartbeat.add(upgraded.socket);
      return { ...upgraded, release: () => heartbeat.delete(upgraded.socket) };
    });
  }

  /**
   * Checks `request` that a `Deno.serve` handler of the user's received,
   * asks the application, and upgrades it with `Deno.upgradeWebSocket`.
   */
  upgradeStandard(
    request: Request,
    info: Pick<Deno.ServeHandlerInfo, "remoteAddr">,
  ): Promise<Response> {
    return this.#admit(
      request,
      remoteAddressOf(info.remoteAddr),
      () =>
        upgradeStandardWebSocket(request, {
          maxMessageBytes: this.#options.maxMessageBytes,
          closeTimeoutMs: CLOSE_TIMEOUT_MS,
          idleTimeoutMs: this.#options.idleTimeoutMs,
        }),
    );
  }

  /**
   * The origin check and onHandshake, then `accept` upgrades and a
   * ClientConnection takes over the socket.
   */
  async #admit(
    request: Request,
    remoteAddr: RemoteAddress,
    accept: () => Accepted | Response,
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
    let clientInfo: ClientInfo = {};
    let rateLimit = this.#options.rateLimit;
    if (app.onHandshake !== undefined) {
      try {
        const result = await app.onHandshake(request, {
          ...this.#options.ctx,
          remoteAddr,
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
    const accepted = accept();
    if (accepted instanceof Response) return accepted;
    const client = new ClientConnection(
      this.#options.ids.next(),
      accepted.socket,
      request,
      clientInfo,
      { ...this.#options, rateLimit, onFinished: this.#onFinished },
    );
    this.#connections.set(client, accepted);
    return accepted.response;
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
    for (const { socket } of this.#connections.values()) {
      socket.terminate(GOING_AWAY_CODE, "service is going away");
    }
    this[Symbol.dispose]();
  }

  /** Stops the heartbeat. */
  [Symbol.dispose](): void {
    this.#heartbeat?.[Symbol.dispose]();
  }
}

/**
 * A TCP client's address as it is; a Unix or vsock socket has no hostname
 * (`""`), and a Unix socket no port (0).
 */
function remoteAddressOf(addr: Deno.Addr): RemoteAddress {
  if ("hostname" in addr) return { hostname: addr.hostname, port: addr.port };
  return { hostname: "", port: "port" in addr ? addr.port : 0 };
}

function unavailable(): Response {
  return new Response("service is not accepting clients\n", {
    status: 503,
    headers: { "retry-after": "1" },
  });
}
