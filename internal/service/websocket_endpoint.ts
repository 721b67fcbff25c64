// Where client WebSockets arrive: the origin check, the handshake hook, the
// upgrade (internal/websocket/) with its heartbeat, and the ClientConnection
// that takes over. Two ways in share all of it but the upgrade: the
// service's own port (ServerWebSocket, framed here, with the Heartbeat) and
// the user's own server (StandardSocket over Deno.upgradeWebSocket, whose
// idleTimeout is the heartbeat).

import type { ClientInfo } from "../../api.ts";
import type { Context, HandshakeAccept, RateLimit } from "../../application.ts";
import type { ApplicationSlot } from "./application_slot.ts";
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
  SERVICE_RESTART,
} from "./client_connection.ts";
import type { SessionStore } from "../session/session_store.ts";
import { offersSubprotocol, SUBPROTOCOL } from "../session/protocol.ts";
import type { ClientIdAllocator } from "../hub/client_id.ts";
import type { LocalHub } from "../hub/local_hub.ts";
import { errorText, type Logger } from "../base/logger.ts";
import type { ServiceMetrics } from "../ops/metrics.ts";
import { checkInfo } from "../api/validate.ts";
import type { InfoBounds } from "../hub/info_size.ts";

/** What the endpoint works with. */
export interface WebSocketEndpointOptions {
  /** The running application (see service.reload). */
  readonly app: ApplicationSlot;
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
  /** The sessions of the clients that speak `wsgate.v1`. */
  readonly sessions: SessionStore;
  /** How long a `wsgate.v1` client may take to send its hello. */
  readonly helloTimeoutMs: number;
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
    return this.#admit(request, info.remoteAddr, (protocol) => {
      const upgraded = upgradeWebSocket(request, info, {
        maxMessageBytes: this.#options.maxMessageBytes,
        frames: this.#frames,
        closeTimeoutMs: CLOSE_TIMEOUT_MS,
        protocol,
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
      (protocol) =>
        upgradeStandardWebSocket(request, {
          maxMessageBytes: this.#options.maxMessageBytes,
          closeTimeoutMs: CLOSE_TIMEOUT_MS,
          idleTimeoutMs: this.#options.idleTimeoutMs,
          protocol,
        }),
    );
  }

  /**
   * The origin check and onHandshake, then `upgrade` (selecting
   * `wsgate.v1` when the client offers it) and a ClientConnection takes
   * over the socket.
   */
  async #admit(
    request: Request,
    remoteAddr: RemoteAddress,
    upgrade: (protocol: string | undefined) => Accepted | Response,
  ): Promise<Response> {
    const v1 = offersSubprotocol(request);
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
    if (app.app.onHandshake !== undefined) {
      try {
        const result = await app.run((current) =>
          current.onHandshake?.(request, { ...this.#options.ctx, remoteAddr })
        );
        if (result instanceof Response) {
          return v1 && result.status >= 400
            ? await refuseAfterUpgrade(result, upgrade(SUBPROTOCOL))
            : result;
        }
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
    const accepted = upgrade(v1 ? SUBPROTOCOL : undefined);
    if (accepted instanceof Response) return accepted;
    const client = new ClientConnection(
      this.#options.ids.next(),
      accepted.socket,
      request,
      clientInfo,
      {
        ...this.#options,
        rateLimit,
        onFinished: this.#onFinished,
        sessions: v1 ? this.#options.sessions : undefined,
      },
    );
    this.#connections.set(client, accepted);
    return accepted.response;
  }

  /**
   * Refuses new clients and closes the open ones with `code`; with
   * `restart`, the `wsgate.v1` ones with 1012 (service restart: they
   * resume elsewhere).
   */
  closeAll(code: number, reason: string, restart = false): void {
    this.#accepting = false;
    for (const client of this.#connections.keys()) {
      if (restart && client.speaksV1) {
        client.close(SERVICE_RESTART, "service restart");
      } else client.close(code, reason);
    }
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
 * Refuses a `wsgate.v1` client after the upgrade, since a browser cannot
 * read the status of a refused one: the socket is closed at once with
 * 4000 + the status, the reason being the first 120 bytes of the body.
 */
async function refuseAfterUpgrade(
  refusal: Response,
  accepted: Accepted | Response,
): Promise<Response> {
  if (accepted instanceof Response) return accepted;
  const code = 4000 + Math.min(refusal.status, 999);
  const reason = firstBytes(await refusal.text().catch(() => ""), 120);
  const { socket } = accepted;
  socket.listen({
    open: () => socket.close(code, reason),
    message() {},
    close: () => accepted.release?.(),
    refused() {},
  });
  return accepted.response;
}

/** The longest start of `text` that takes at most `max` bytes in UTF-8. */
function firstBytes(text: string, max: number): string {
  const bytes = new TextEncoder().encode(text);
  if (bytes.length <= max) return text;
  let end = max;
  // Not in the middle of a character: back up over continuation bytes.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return new TextDecoder().decode(bytes.subarray(0, end));
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
