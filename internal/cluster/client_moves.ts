// Where a session that moved to another service is reached, and the fence
// that each service puts in its sends when one moves (docs/recovery.md).
//
// A service's sends reach each peer over one ordered link, and its own
// clients in program order. When a session moves from clientId A (on the
// service O that held it) to clientId B (on the service N that takes it
// over), every member cuts its sends at one point: it queues a FENCE on its
// links to O and N in the same tick, so that each of the two sees the same
// cut in that member's order: O keeps for A what came before the fence, N
// keeps for B what comes after it. From the fence on, this service also
// sends what it is asked to send to A to B instead, so that a sender that
// still names A loses nothing and keeps its order.

import { GatewayError } from "../../errors.ts";
import { DeliveryEncoder } from "../delivery/codec.ts";
import { nodeIdOf } from "../hub/client_id.ts";
import type { Members, Peers } from "./peers.ts";

/** Moves in a row that {@linkcode ClientMoves.resolve} follows, at most. */
const MAX_HOPS = 16;

/** Options of {@linkcode ClientMoves}. */
export interface ClientMovesOptions {
  /** This service's node id. */
  readonly nodeId: string;
  readonly members: Members;
  readonly peers: Peers;
  /**
   * How long sends to a moved clientId go to its new one (the recovery
   * window).
   */
  readonly forwardMs: number;
}

/** Called when a fence reaches this service: from `origin` (a node id). */
export type FenceArrived = (
  origin: string,
  clientId: string,
  newClientId: string,
) => void;

/** The sessions that moved away, as this service sends to them. */
export class ClientMoves implements Disposable {
  readonly #options: ClientMovesOptions;
  readonly #encoder = new DeliveryEncoder();
  readonly #moved = new Map<string, string>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  #announcement: Uint8Array | undefined;
  /** This service's own fences, when it holds or takes the session. */
  #arrived: FenceArrived = () => {};

  constructor(options: ClientMovesOptions) {
    this.#options = options;
  }

  /** How many moved clientIds are forwarded now. */
  get size(): number {
    return this.#moved.size;
  }

  /** Says where this service's own fences go (the session store). */
  set onFence(arrived: FenceArrived) {
    this.#arrived = arrived;
  }

  /** The clientId that sends to `clientId` go to: its newest, if it moved. */
  resolve(clientId: string): string {
    let id = clientId;
    for (let hop = 0; hop < MAX_HOPS; hop++) {
      const next = this.#moved.get(id);
      if (next === undefined) return id;
      id = next;
    }
    return id;
  }

  /**
   * Cuts this service's sends between session `clientId` and its new
   * clientId `newClientId`, in one tick: FENCE deliveries on the links to
   * both services (for this service itself, its own cut at once), and
   * from now on sends to `clientId` go to `newClientId`. Resolves once
   * both services applied the fence.
   *
   * @throws {GatewayError} `unavailable` when a service of the two is not
   * a member or its link cannot carry fences.
   */
  fence(clientId: string, newClientId: string): Promise<void> {
    const { nodeId, members, peers, forwardMs } = this.#options;
    const owners = [nodeIdOf(clientId), nodeIdOf(newClientId)];
    for (const owner of owners) {
      if (owner !== nodeId && members.addressOf(owner) === undefined) {
        return Promise.reject(
          new GatewayError(
            "unavailable",
            `Cannot fence the takeover of ${clientId}: service ${owner} is not a member`,
          ),
        );
      }
    }
    if (owners[0] === owners[1]) {
      return Promise.reject(
        new GatewayError(
          "invalid_argument",
          `Cannot fence the takeover of ${clientId} by ${newClientId}: a session moves to another service`,
        ),
      );
    }
    this.#moved.set(clientId, newClientId);
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (this.#moved.get(clientId) === newClientId) {
        this.#moved.delete(clientId);
      }
    }, forwardMs);
    this.#timers.add(timer);
    const waits: Promise<void>[] = [];
    for (const owner of owners) {
      if (owner === nodeId) {
        this.#arrived(nodeId, clientId, newClientId);
        continue;
      }
      const sink = peers.get(members.addressOf(owner)!).deliveries;
      if (sink.fence === undefined) {
        waits.push(Promise.reject(
          new GatewayError(
            "unavailable",
            `Cannot fence the takeover of ${clientId}: the link to service ${owner} carries no fences`,
          ),
        ));
        continue;
      }
      this.#announcement ??= this.#encoder.fence(nodeId, "", "").slice();
      waits.push(
        sink.fence(
          this.#encoder.fence(nodeId, clientId, newClientId),
          this.#announcement,
        ),
      );
    }
    return Promise.all(waits).then(() => {});
  }

  /** Stops forwarding. */
  [Symbol.dispose](): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#moved.clear();
  }
}
