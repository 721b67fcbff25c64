// Session takeover: a `wsgate.v1` client that comes back with its token to
// another service than the one holding its session gets it there, with
// nothing lost or doubled (docs/recovery.md). Both ends live here: the
// taker N (a hello on this service names a session of another) and the
// holder O (a peer asks for one of this service's detached sessions).
//
//  1. N asks O to begin (TakeOverSession): O checks the token and that it
//     keeps every frame after the client's seq, freezes the session (a
//     gate in front of it in the hub, a spent token) and answers its uid,
//     groups and info.
//  2. N adds a pending client under the new clientId with them: from now
//     on N holds these names, and what is sent to them reaches the pending
//     client, which sorts it by sender (below).
//  3. N asks every member, itself and O included, for a fence
//     (FenceSession): each cuts its sends in one tick with a FENCE on its
//     ordered links to O and N (internal/cluster/client_moves.ts), and
//     answers once both applied it.
//  4. Meanwhile O keeps for the session what a sender sent before that
//     sender's fence reached O, and drops the rest; N drops what a sender
//     sent before its fence reached N, and holds the rest. Each delivery's
//     sender is known while it is applied (internal/delivery/origin.ts).
//  5. With every fence in (or FENCE_TIMEOUT_MS passed), N asks O for the
//     frames after the client's seq (HandOverSession), then tells O that it
//     has them; O drops the session (a closing O stays up until then).
//  6. N's session starts with them and the seq counter after them; what
//     the pending client held follows, then live frames.

import type { ClientInfo, Message } from "../../api.ts";
import { GatewayError } from "../../errors.ts";
import type { Logger } from "../base/logger.ts";
import type { ClientMoves } from "../cluster/client_moves.ts";
import type {
  HandOverAnswer,
  Members,
  Peers,
  SessionCalls,
  TakeOverAnswer,
  TakeOverRequest,
} from "../cluster/peers.ts";
import type { DeliveryTarget } from "../delivery/codec.ts";
import { deliveryOrigin } from "../delivery/origin.ts";
import { nodeIdOf } from "../hub/client_id.ts";
import type { ClientSocket, LocalHub } from "../hub/local_hub.ts";
import type { Session } from "./session.ts";
import type {
  SessionStore,
  TakenOverSession,
  TakeoverHook,
} from "./session_store.ts";
import { issueToken, tokenClientId } from "./token.ts";

/**
 * How long the taker waits for one member's fence. A member that has not
 * answered by then counts as fenced: what it sends to the session during
 * the takeover may be lost (never doubled).
 */
export const FENCE_TIMEOUT_MS = 2000;

/**
 * How many times the taker asks the members that joined while it waited
 * for fences (the first round asks every member).
 */
const FENCE_ROUNDS = 3;

/**
 * How long a frozen session waits on its holder for the taker to say it
 * received the frames (HandOverSession) before it is dropped: the taker is
 * gone.
 */
export const HANDOVER_TIMEOUT_MS = 30_000;

/** Options of {@linkcode Takeovers}. */
export interface TakeoversOptions {
  /** This service's node id. */
  readonly nodeId: string;
  readonly hub: LocalHub;
  readonly store: SessionStore;
  readonly members: Members;
  readonly peers: Peers;
  /** This service's fences and the moved clientIds it forwards. */
  readonly moves: ClientMoves;
  readonly logger: Logger;
  /**
   * How long to wait for each member's fence.
   *
   * @default {FENCE_TIMEOUT_MS}
   */
  readonly fenceTimeoutMs?: number;
  /**
   * When a member did not fence: how long after the hand-over what it
   * sends is still dropped, as what it sent before may still be on its
   * way (the peers' delivery deadline, `deadlineMs`).
   *
   * @default {2000}
   */
  readonly graceMs?: number;
  /**
   * Resolves once every peer knows the names this service gained so far
   * (holder routing, docs/holder_routing.md); undefined when there is
   * nothing to wait for. A takeover waits for it between holding the
   * session's names and asking for fences, so that what a member sends
   * after its fence is routed to this service.
   *
   * @default {nothing to wait for}
   */
  readonly holdersSettled?: (() => Promise<void> | undefined) | undefined;
}

/** A session of this service that a peer takes over (O's side). */
interface Frozen {
  readonly session: Session;
  /** The client's seq: the frames after it go to the taker. */
  readonly seq: number;
  readonly newClientId: string;
  /** Senders whose fence reached this service. */
  readonly fenced: Set<string>;
  /** Whether its frames went to the taker: nothing is kept any more. */
  handed: boolean;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** Something a pending client held: a message, or a close. */
type Held = Message | { readonly code: number; readonly reason: string };

/**
 * The hub's socket of the session being frozen on its holder: what a
 * sender sent before its fence reached this service goes to the session,
 * the rest (which the taker holds) is dropped.
 */
class FrozenGate implements ClientSocket {
  readonly #frozen: Frozen;
  readonly #nodeId: string;

  constructor(frozen: Frozen, nodeId: string) {
    this.#frozen = frozen;
    this.#nodeId = nodeId;
  }

  send(message: Message): void {
    if (this.#before()) this.#frozen.session.send(message);
  }

  close(code: number, reason: string): void {
    if (this.#before()) this.#frozen.session.close(code, reason);
  }

  #before(): boolean {
    const { fenced, handed } = this.#frozen;
    return !handed && !fenced.has(deliveryOrigin.current ?? this.#nodeId);
  }
}

/**
 * The taker's client while the session comes over: keeps what a sender
 * sent after its fence reached this service, drops what came before (the
 * holder keeps that). It holds what it keeps until the session is there,
 * then hands it on. Senders whose fence did not come in count from
 * `acceptAfter` on.
 */
class PendingClient implements ClientSocket {
  readonly #nodeId: string;
  readonly fenced = new Set<string>();
  readonly held: Held[] = [];
  /** When every sender counts as fenced (Date.now()); never at first. */
  acceptAfter = Infinity;
  /** The session, once installed: what is kept goes to it. */
  session: Session | undefined;

  constructor(nodeId: string) {
    this.#nodeId = nodeId;
  }

  send(message: Message): void {
    if (!this.#after()) return;
    if (this.session !== undefined) this.session.send(message);
    else this.held.push(message);
  }

  close(code: number, reason: string): void {
    if (!this.#after()) return;
    if (this.session !== undefined) this.session.close(code, reason);
    else this.held.push({ code, reason });
  }

  #after(): boolean {
    return this.fenced.has(deliveryOrigin.current ?? this.#nodeId) ||
      Date.now() >= this.acceptAfter;
  }
}

/** The takeovers of one service, as taker and as holder. */
export class Takeovers implements SessionCalls, Disposable {
  readonly #options: TakeoversOptions;
  readonly #fenceTimeoutMs: number;
  readonly #graceMs: number;
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  /** This service's sessions that peers take over, by clientId. */
  readonly #frozen = new Map<string, Frozen>();
  /** Clients this service takes over, by their new clientId. */
  readonly #pending = new Map<string, PendingClient>();

  constructor(options: TakeoversOptions) {
    this.#options = options;
    const { fenceTimeoutMs = FENCE_TIMEOUT_MS, graceMs = 2000 } = options;
    if (!(fenceTimeoutMs > 0)) {
      throw new RangeError(
        `Cannot wait for fences: fenceTimeoutMs must be positive, got ${fenceTimeoutMs}`,
      );
    }
    this.#fenceTimeoutMs = fenceTimeoutMs;
    this.#graceMs = graceMs;
    options.moves.onFence = (origin, clientId, newClientId) =>
      this.fenceArrived(origin, clientId, newClientId);
  }

  /** Takeovers running on either side. */
  get size(): number {
    return this.#frozen.size + this.#pending.size;
  }

  /**
   * The session store's takeover hook: takes over the session `token`
   * names from its holder (steps 1 to 5); undefined when the session
   * cannot come over (fresh session, `recovered: false`).
   */
  readonly take: TakeoverHook = (token, seq, newClientId) =>
    this.#take(token, seq, newClientId);

  /**
   * `hub` as the target of peers' deliveries, with their fences going to
   * {@linkcode fenceArrived}.
   */
  deliveryTarget(hub: LocalHub): DeliveryTarget {
    return {
      toAll: (message, exclude) => hub.toAll(message, exclude),
      toClient: (clientId, message) => hub.toClient(clientId, message),
      toUids: (uids, message) => hub.toUids(uids, message),
      toGroups: (groups, message, exclude) =>
        hub.toGroups(groups, message, exclude),
      close: (clientId, lastMessage) => hub.close(clientId, lastMessage),
      fence: (origin, clientId, newClientId) =>
        this.fenceArrived(origin, clientId, newClientId),
    };
  }

  /** The fence of sender `origin` reached this service. */
  fenceArrived(origin: string, clientId: string, newClientId: string): void {
    const frozen = this.#frozen.get(clientId);
    if (frozen?.newClientId === newClientId) frozen.fenced.add(origin);
    this.#pending.get(newClientId)?.fenced.add(origin);
  }

  // ------------------------------------------------------------ holder (O)

  /** Step 1, on the holder: checks and freezes a detached session. */
  takeOver(request: TakeOverRequest): Promise<TakeOverAnswer> {
    const { store, hub, nodeId } = this.#options;
    const session = store.verify(request.token, request.seq);
    if (session === undefined || this.#frozen.has(session.clientId)) {
      return Promise.resolve({ recovered: false });
    }
    const { clientId } = session;
    if (session.state === "attached") {
      // Its connection here is half-open: the client is elsewhere.
      session.sink?.supersede();
      store.detach(session, 1006);
    }
    const state = hub.detachedState(clientId);
    if (session.state !== "detached" || state === undefined) {
      return Promise.resolve({ recovered: false });
    }
    // The token is spent: neither a resume here nor another takeover.
    session.token = issueToken(clientId);
    const frozen: Frozen = {
      session,
      seq: request.seq,
      newClientId: request.newClientId,
      fenced: new Set(),
      handed: false,
      timer: setTimeout(() => {
        if (this.#frozen.get(clientId) !== frozen) return;
        this.#options.logger.warn(
          "a session taken over was not handed over in time; dropping it",
          { clientId, newClientId: request.newClientId },
        );
        this.#drop(clientId, frozen);
      }, HANDOVER_TIMEOUT_MS),
    };
    this.#frozen.set(clientId, frozen);
    hub.replaceSocket(clientId, new FrozenGate(frozen, nodeId));
    return Promise.resolve({
      recovered: true,
      clientId,
      uid: state.uid,
      groups: state.groups,
      info: state.info,
    });
  }

  /** Step 3, on every member: this service's fence. */
  fence(clientId: string, newClientId: string): Promise<void> {
    return this.#options.moves.fence(clientId, newClientId);
  }

  /**
   * Step 5, on the holder: the frames after the client's seq. The session
   * stays (offline, and a closing service stays up for it) until the taker
   * says it {@linkcode received} them, or HANDOVER_TIMEOUT_MS pass.
   */
  handOver(clientId: string, newClientId: string): Promise<HandOverAnswer> {
    const frozen = this.#frozen.get(clientId);
    if (frozen === undefined || frozen.newClientId !== newClientId) {
      return Promise.resolve({ recovered: false });
    }
    const { session, seq } = frozen;
    const frames = session.state === "ended"
      ? undefined
      : session.framesAfter(seq);
    if (frames === undefined) {
      this.#drop(clientId, frozen);
      return Promise.resolve({ recovered: false });
    }
    // Later deliveries are the taker's.
    frozen.handed = true;
    return Promise.resolve({ recovered: true, firstSeq: seq + 1, frames });
  }

  /** The end of step 5, on the holder: the taker has the frames. */
  received(clientId: string, newClientId: string): Promise<void> {
    const frozen = this.#frozen.get(clientId);
    if (frozen?.newClientId === newClientId) this.#drop(clientId, frozen);
    return Promise.resolve();
  }

  /**
   * Drops a frozen session: its clientId goes offline, its uid and groups
   * are released here.
   */
  #drop(clientId: string, frozen: Frozen): void {
    this.#frozen.delete(clientId);
    clearTimeout(frozen.timer);
    this.#options.store.release(frozen.session);
  }

  // ------------------------------------------------------------- taker (N)

  async #take(
    token: string,
    seq: number,
    newClientId: string,
  ): Promise<TakenOverSession | undefined> {
    const { members, peers, logger } = this.#options;
    const clientId = tokenClientId(token);
    if (clientId === undefined) return undefined;
    let owner: string;
    try {
      owner = nodeIdOf(clientId);
    } catch {
      return undefined;
    }
    const address = members.addressOf(owner);
    // Its service is gone (crashed, or never was).
    const calls = address === undefined
      ? undefined
      : peers.get(address).sessions;
    if (calls === undefined) return undefined;
    let begun: TakeOverAnswer;
    try {
      begun = await calls.takeOver({ token, seq, newClientId });
    } catch (error) {
      logger.debug("the holder of a session did not answer its takeover", {
        clientId,
        error: GatewayError.from(error).message,
      });
      return undefined;
    }
    if (!begun.recovered) return undefined;
    const pending = this.#hold(newClientId, begun);
    try {
      await this.#options.holdersSettled?.();
      const everyFence = await this.#fenceAll(clientId, newClientId);
      const handed = await calls.handOver(clientId, newClientId);
      if (!handed.recovered) {
        this.#unhold(newClientId, pending);
        return undefined;
      }
      // Every member fenced: a sender without a fence joined after the
      // last one was asked, and what it sends from now on the holder drops
      // (it handed the frames over), so all of it is the taker's. Else the
      // senders whose fence did not come in count from the grace on:
      // before, what they sent may have reached the holder too, and such a
      // sender cannot be told from a newcomer.
      pending.acceptAfter = Date.now() + (everyFence ? 0 : this.#graceMs);
      // The holder drops the session (a closing holder waits for this).
      calls.received(clientId, newClientId).catch((error) => {
        logger.debug("the holder of a session taken over did not hear back", {
          clientId,
          error: GatewayError.from(error).message,
        });
      });
      return {
        previousClientId: clientId,
        seq: handed.firstSeq - 1 + handed.frames.length,
        frames: handed.frames,
        uid: begun.uid,
        groups: begun.groups,
        info: begun.info,
        install: (session) => this.#install(newClientId, pending, session),
      };
    } catch (error) {
      this.#unhold(newClientId, pending);
      logger.warn("a session takeover failed; the client starts afresh", {
        clientId,
        error: GatewayError.from(error).message,
      });
      return undefined;
    }
  }

  /**
   * Step 2: the one moment this service starts holding the session's
   * names (its uid and groups reach the pending client from now on), and
   * before any fence is asked for.
   */
  #hold(
    newClientId: string,
    state: {
      uid: string | undefined;
      groups: readonly string[];
      info: ClientInfo;
    },
  ): PendingClient {
    const { hub, nodeId } = this.#options;
    const pending = new PendingClient(nodeId);
    this.#pending.set(newClientId, pending);
    hub.add(newClientId, pending, state.info);
    if (state.uid !== undefined) hub.bind(newClientId, state.uid);
    for (const group of state.groups) hub.join(newClientId, group);
    return pending;
  }

  #unhold(newClientId: string, pending: PendingClient): void {
    if (this.#pending.get(newClientId) !== pending) return;
    this.#pending.delete(newClientId);
    this.#options.hub.remove(newClientId);
  }

  /**
   * Step 6: what the pending client held goes to the session, which takes
   * its place in the hub (after the grace, when a member did not fence).
   */
  #install(newClientId: string, pending: PendingClient, session: Session) {
    this.#pending.delete(newClientId);
    const { hub } = this.#options;
    const wait = pending.acceptAfter - Date.now();
    if (wait <= 0) {
      if (!hub.replaceSocket(newClientId, session)) return;
    } else {
      pending.session = session;
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        if (session.state !== "ended") hub.replaceSocket(newClientId, session);
      }, wait);
      this.#timers.add(timer);
    }
    for (const held of pending.held) {
      if (typeof held === "object" && !(held instanceof Uint8Array)) {
        // A close (the Api closed the client meanwhile): once the connection
        // is attached and has its welcome and frames.
        setTimeout(() => session.close(held.code, held.reason), 0);
        break;
      }
      session.send(held);
    }
    pending.held.length = 0;
  }

  /**
   * Step 3: asks every member (this service too) for its fence, each for
   * at most the fence timeout; one that fails or is late is logged. Then
   * the members that joined meanwhile, for a few rounds. True when every
   * member asked fenced.
   */
  async #fenceAll(clientId: string, newClientId: string): Promise<boolean> {
    const { members, peers, moves, logger } = this.#options;
    const asked = new Set<string>();
    // This service's fence runs beside the first round's.
    const own = this.#fenceEach(
      "this service",
      moves.fence(clientId, newClientId),
      clientId,
    );
    let fenced = true;
    for (let round = 0; round < FENCE_ROUNDS; round++) {
      const addresses = members.peerAddresses().filter((a) => !asked.has(a));
      if (addresses.length === 0) break;
      const answers = await Promise.all(addresses.map((address) => {
        asked.add(address);
        const calls = peers.get(address).sessions;
        const fence = calls === undefined
          ? Promise.reject(
            new GatewayError(
              "unavailable",
              "the peer takes no part in takeovers",
            ),
          )
          : calls.fence(clientId, newClientId);
        return this.#fenceEach(address, fence, clientId);
      }));
      fenced &&= answers.every(Boolean);
    }
    const ownFenced = await own;
    fenced &&= ownFenced;
    const late = members.peerAddresses().some((a) => !asked.has(a));
    if (late) {
      logger.warn(
        "members kept joining during a session takeover; the newest were not fenced",
        { clientId },
      );
    }
    return fenced && !late;
  }

  /** Waits for one member's fence: false (logged) when it did not come. */
  async #fenceEach(
    member: string,
    fence: Promise<void>,
    clientId: string,
  ): Promise<boolean> {
    const late = await within(fence, this.#fenceTimeoutMs);
    if (late === undefined) return true;
    this.#options.logger.warn(
      "a member did not fence a session takeover; what it sends meanwhile may be lost",
      { member, clientId, error: late },
    );
    return false;
  }

  /** Drops every takeover (the service stops). */
  [Symbol.dispose](): void {
    for (const frozen of this.#frozen.values()) clearTimeout(frozen.timer);
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#frozen.clear();
    this.#pending.clear();
  }
}

/**
 * Waits for `promise` at most `ms`: undefined when it resolved in time,
 * else why not.
 */
async function within(
  promise: Promise<void>,
  ms: number,
): Promise<string | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise.then(() => undefined),
      new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve(`no answer within ${ms} ms`), ms);
      }),
    ]);
  } catch (error) {
    return GatewayError.from(error).message;
  } finally {
    clearTimeout(timer);
  }
}
