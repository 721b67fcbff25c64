// The graceful shutdown of a service: the order in which its parts stop,
// each step bounded by what is left of shutdownTimeoutMs.

import type { RegisterLinks } from "../membership/register_link.ts";
import type { WebSocketEndpoint } from "./websocket_endpoint.ts";
import type { LocalHub } from "../hub/local_hub.ts";
import type { SessionStore } from "../session/session_store.ts";
import type { PeerPool } from "../rpc/peer_pool.ts";
import type { MemberTable } from "../membership/member_table.ts";
import type { RpcServer } from "../grpc/rpc_server.ts";
import type { HttpServer } from "../http/http_server.ts";
import type { DeliveryPort } from "../delivery/port_listener.ts";
import { errorText, type Logger } from "../base/logger.ts";
import { GOING_AWAY } from "./client_connection.ts";
import { sleep } from "../base/backoff.ts";

/** The parts of a running service that {@linkcode shutDownService} stops. */
export interface ServiceParts {
  /** The Join streams to the registers. */
  readonly links: RegisterLinks;
  /** The clients' WebSockets. */
  readonly endpoint: WebSocketEndpoint;
  readonly hub: LocalHub;
  /**
   * The sessions of `wsgate.v1` clients: kept, once their clients are
   * closed (1012), while other services may take them over.
   */
  readonly sessions: SessionStore;
  readonly peers: PeerPool;
  readonly members: MemberTable;
  /**
   * The WebSocket (and plain HTTP) server; undefined when the service has
   * no port of its own (its clients come through the user's server).
   */
  readonly server: HttpServer | undefined;
  readonly rpc: RpcServer;
  readonly deliveryPort: DeliveryPort | undefined;
  /**
   * The application's onStop with its context, asked for once the clients
   * are gone; `undefined` when it has none or its onStart did not finish.
   */
  onStop(): (() => void | Promise<void>) | undefined;
}

/**
 * Stops a service gracefully, within about `shutdownTimeoutMs`: leaves the
 * registers, stops accepting clients, closes every client with 1001 (going
 * away; `wsgate.v1` clients with 1012, service restart) after what is
 * queued for it, waits for their close handshakes and onClose hooks, waits
 * while other services take over the sessions of `wsgate.v1` clients (when
 * there are other services), releases the sessions left, runs onStop, waits until deliveries queued for peers are
 * acknowledged, then stops the servers (giving them a second at least).
 * A service that has sessions leaves the registers only after the wait for
 * their takeovers, so that peers find it and keep sending to it meanwhile.
 * A step that fails or runs out of time does not hold up the ones after it.
 */
export async function shutDownService(
  parts: ServiceParts,
  shutdownTimeoutMs: number,
  logger: Logger,
): Promise<void> {
  const { links, endpoint, hub, peers, members, server, rpc, deliveryPort } =
    parts;
  const deadline = Date.now() + shutdownTimeoutMs;
  const left = () => Math.max(0, deadline - Date.now());
  const leave = async () => {
    logger.debug("closing: leaving the registers");
    // Peers stop routing to this service once the registers say it left.
    await within(links.close(), left());
  };
  // A service that has sessions to hand over stays a member until other
  // services took them over: they find it, and peers keep sending to it
  // meanwhile, so that what is sent to those sessions is kept
  // (docs/recovery.md). Without any, it leaves first, as ever.
  const leavesLate = parts.sessions.recovers && parts.sessions.size > 0;
  if (!leavesLate) await leave();
  endpoint.stopAccepting();
  logger.debug("closing: closing the clients", { clients: hub.size });
  // Each close frame goes out after what is queued for that client;
  // clients leave the hub at once and their onClose is queued.
  endpoint.closeAll(GOING_AWAY, "service is going away", true);
  await waitUntil(() => endpoint.size === 0, left());
  if (endpoint.size > 0) {
    logger.warn("some clients did not finish closing in time", {
      clients: endpoint.size,
      shutdownTimeoutMs,
    });
  }
  const { sessions } = parts;
  if (sessions.held > 0 && members.peerAddresses().length > 0) {
    // Their clients come back to other services, which take them over.
    logger.debug("closing: waiting for sessions to be taken over", {
      sessions: sessions.held,
    });
    await within(sessions.whenNoneHeld(), left());
  }
  if (leavesLate) await leave();
  sessions.releaseAll();
  const onStop = parts.onStop();
  if (onStop !== undefined) {
    logger.debug("closing: running onStop");
    await within(runHook("onStop", onStop, logger), left());
  }
  logger.debug("closing: waiting for deliveries to peers");
  // What onClose and onStop sent to other services.
  await within(peers.drained(), left());
  logger.debug("closing: stopping the servers");
  // Cuts off client sockets still closing (dead or stuck clients); they
  // get a second at least.
  if (server !== undefined) {
    const ms = Math.max(left(), 1000);
    await within(server.close(ms), ms);
  }
  endpoint.cutOff();
  // Outgoing connections first: a peer closing at the same moment then
  // sees its server's connections end instead of waiting for them.
  peers.close();
  members.close();
  await Promise.all([rpc.close(), deliveryPort?.close()]);
}

/** Waits for `promise`, at most `ms`; never rejects. */
async function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    promise.then(() => {}, () => {}),
    new Promise<void>((resolve) => timer = setTimeout(resolve, ms)),
  ]);
  clearTimeout(timer);
}

/** Runs a service hook; a failure is logged. */
async function runHook(
  name: string,
  hook: () => void | Promise<void>,
  logger: Logger,
): Promise<void> {
  try {
    await hook();
  } catch (error) {
    logger.error(`${name} failed`, { error: errorText(error) });
  }
}

/** Resolves when `done()` holds, or after `ms`. */
async function waitUntil(done: () => boolean, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!done() && Date.now() < until) await sleep(10);
}
