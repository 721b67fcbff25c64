// The sessions of one service's `wsgate.v1` clients: made on a hello,
// resumed on a hello with a valid token, kept for the window when their
// connection breaks (offline in the hub, but still sent to), and released
// (out of the hub: uid, groups and info with them) when the window ends,
// when they overflow, or when the client ends them. A hello whose token
// names a session of another service goes to the takeover hook, if one is
// set (internal/session/takeover*.ts).

import type { ClientInfo, Message } from "../../api.ts";
import type { LocalHub } from "../hub/local_hub.ts";
import type { Logger } from "../base/logger.ts";
import { Session, type SessionSink } from "./session.ts";
import { issueToken, tokenClientId, tokenMatches } from "./token.ts";
import { endsSession } from "./protocol.ts";

/** How sessions are kept: `recovery` of the service options, resolved. */
export interface RecoverySettings {
  /** How long a detached session is kept, in milliseconds. */
  readonly windowMs: number;
  /** Bytes of frames one session keeps for a resume. */
  readonly maxBytes: number;
}

/** Options of {@linkcode SessionStore}. */
export interface SessionStoreOptions {
  readonly hub: LocalHub;
  /** This service's node id: the prefix of its clientIds. */
  readonly nodeId: string;
  /** Undefined: recovery is off (clients get seqs, never a kept session). */
  readonly recovery: RecoverySettings | undefined;
  readonly logger: Logger;
}

/** What a hello asks for. */
export interface HelloRequest {
  /** The token of the session to resume, if any. */
  readonly token: string | undefined;
  /** The seq of the last data frame the client received. */
  readonly seq: number;
}

/** The session a hello opened, and how. */
export interface Opening {
  readonly session: Session;
  /** Whether the client gets its session (and what it missed) back. */
  readonly recovered: boolean;
  /** The clientId the client had before, when recovered. */
  readonly previousClientId: string | undefined;
  /** The seq after which data frames follow (the welcome's seq). */
  readonly seq: number;
  /** The initial info of a fresh session's client (from onHandshake). */
  readonly info: ClientInfo;
}

/**
 * What a takeover of a session held by another service brings: the state
 * the new session starts with.
 */
export interface TakenOverSession {
  /** The clientId the session had on the other service. */
  readonly previousClientId: string;
  /** The seq of the last data frame that service issued. */
  readonly seq: number;
  /** Its frames after the client's seq, oldest first, ending with `seq`'s. */
  readonly frames: readonly Message[];
  readonly uid: string | undefined;
  readonly groups: readonly string[];
  readonly info: ClientInfo;
  /**
   * Puts the new session in the hub in place of the takeover's pending
   * client (already there under the new clientId, with the uid, groups and
   * info) and hands it what was held for it meanwhile; when unset, the
   * session is added to the hub with `uid`, `groups` and `info`.
   */
  readonly install?: ((session: Session) => void) | undefined;
}

/**
 * Takes over the session that `token` names from the service that holds
 * it, for a client that received every frame up to `seq`; resolves with
 * undefined when that is not possible (no such session, a wrong token,
 * frames lost, the service unreachable).
 */
export type TakeoverHook = (
  token: string,
  seq: number,
  newClientId: string,
) => Promise<TakenOverSession | undefined>;

/** The sessions of one service. */
export class SessionStore {
  readonly #hub: LocalHub;
  readonly #nodePrefix: string;
  readonly #recovery: RecoverySettings | undefined;
  readonly #logger: Logger;
  readonly #sessions = new Map<string, Session>();
  #takeover: TakeoverHook | undefined;
  /** Detached sessions, and who waits for them all to be gone. */
  #held = 0;
  #whenNoneHeld: PromiseWithResolvers<void> | undefined;
  readonly #overflowed = (session: Session) => {
    this.#logger.debug("a detached session overflowed; releasing it", {
      clientId: session.clientId,
    });
    // Not now: this runs inside a send loop of the hub.
    queueMicrotask(() => this.release(session));
  };
  readonly #closedByHub = (session: Session) => this.release(session);
  /**
   * The copy of the bytes last kept, until the current task ends: bytes
   * sent to many sessions in one go are copied once.
   */
  #lastBytes: Uint8Array | undefined;
  #lastCopy: Uint8Array = new Uint8Array(0);
  readonly #forgetBytes = () => {
    this.#lastBytes = undefined;
    this.#lastCopy = new Uint8Array(0);
  };
  readonly #copy = (bytes: Uint8Array): Uint8Array => {
    if (bytes !== this.#lastBytes) {
      if (this.#lastBytes === undefined) queueMicrotask(this.#forgetBytes);
      this.#lastBytes = bytes;
      this.#lastCopy = bytes.slice();
    }
    return this.#lastCopy;
  };

  constructor(options: SessionStoreOptions) {
    this.#hub = options.hub;
    this.#nodePrefix = `${options.nodeId}.`;
    this.#recovery = options.recovery;
    this.#logger = options.logger;
  }

  /** Whether sessions are kept when connections break. */
  get recovers(): boolean {
    return this.#recovery !== undefined;
  }

  /** Sessions of this service, attached or detached. */
  get size(): number {
    return this.#sessions.size;
  }

  /** Detached sessions: kept for a resume or a takeover. */
  get held(): number {
    return this.#held;
  }

  /** Resolves once no session is detached (at once when none is). */
  whenNoneHeld(): Promise<void> {
    if (this.#held === 0) return Promise.resolve();
    return (this.#whenNoneHeld ??= Promise.withResolvers<void>()).promise;
  }

  /**
   * Sets who takes over sessions of other services (a hello whose token
   * names another service's clientId).
   */
  setTakeover(hook: TakeoverHook | undefined): void {
    this.#takeover = hook;
  }

  /** This service's session of `clientId`, if any. */
  get(clientId: string): Session | undefined {
    return this.#sessions.get(clientId);
  }

  /**
   * The session that `token` names if the token is its current one and
   * every frame after `seq` is still retained; no side effect. A token of
   * no session costs as much as a wrong one.
   */
  verify(token: string, seq: number): Session | undefined {
    const clientId = tokenClientId(token) ?? "";
    const session = this.#sessions.get(clientId);
    if (!tokenMatches(session?.token, token) || session === undefined) {
      return undefined;
    }
    if (session.state === "ended") return undefined;
    return session.keepsAfter(seq) ? session : undefined;
  }

  /**
   * Opens the session of a hello: the one its token names, resumed (same
   * clientId); one taken over from another service (a new clientId,
   * `newClientId`); or a fresh one with `newClientId` and `info`. The
   * session is in the hub (online) and not attached yet: the caller sends
   * the welcome, then {@linkcode attach}es it in the same turn.
   */
  open(
    hello: HelloRequest,
    newClientId: string,
    info: ClientInfo,
  ): Opening | Promise<Opening> {
    const { token, seq } = hello;
    if (token === undefined || this.#recovery === undefined) {
      return this.#fresh(newClientId, info);
    }
    const clientId = tokenClientId(token) ?? "";
    const takeover = this.#takeover;
    if (
      takeover !== undefined && !clientId.startsWith(this.#nodePrefix) &&
      clientId !== ""
    ) {
      return takeover(token, seq, newClientId).then(
        (taken) =>
          taken === undefined
            ? this.#fresh(newClientId, info)
            : this.#adopt(newClientId, seq, taken),
        (error) => {
          this.#logger.warn("a session takeover failed", {
            clientId,
            error: String(error),
          });
          return this.#fresh(newClientId, info);
        },
      );
    }
    const session = this.#sessions.get(clientId);
    if (!tokenMatches(session?.token, token) || session === undefined) {
      return this.#fresh(newClientId, info);
    }
    if (!session.keepsAfter(seq)) {
      // The right token, but what the client missed is gone.
      this.release(session);
      return this.#fresh(newClientId, info);
    }
    // Still attached: the old connection is half-open; this one wins.
    session.sink?.supersede();
    this.#undetach(session);
    this.#hub.reattach(clientId);
    session.token = issueToken(clientId);
    return {
      session,
      recovered: true,
      previousClientId: clientId,
      seq,
      info: {},
    };
  }

  /**
   * Attaches an opened session to its connection: the frames after `seq`
   * are sent to it, then live ones.
   */
  attach(session: Session, sink: SessionSink, seq: number): void {
    session.attach(sink, seq);
  }

  /**
   * A session's connection ended with `code`: the session is kept for the
   * window (offline in the hub) unless the code ends it or recovery is
   * off; then it is released.
   */
  detach(session: Session, code: number): void {
    if (session.state === "ended") return;
    const recovery = this.#recovery;
    if (recovery === undefined || endsSession(code)) {
      this.release(session);
      return;
    }
    if (session.state === "detached") return;
    session.detach();
    this.#hub.detach(session.clientId);
    this.#held++;
    session.timer = setTimeout(() => {
      this.#logger.debug("a session's window passed; releasing it", {
        clientId: session.clientId,
      });
      this.release(session);
    }, recovery.windowMs);
  }

  /**
   * Ends a session for good: out of the store and the hub (its uid,
   * groups and info with it). An attached session's connection is left
   * alone (the caller closes it).
   */
  release(session: Session): void {
    if (session.state === "ended") return;
    this.#undetach(session);
    session.end();
    if (this.#sessions.get(session.clientId) === session) {
      this.#sessions.delete(session.clientId);
      this.#hub.remove(session.clientId);
    }
  }

  /** Releases every session (the service stops). */
  releaseAll(): void {
    for (const session of [...this.#sessions.values()]) this.release(session);
  }

  #undetach(session: Session): void {
    if (session.state !== "detached" || session.timer === undefined) return;
    clearTimeout(session.timer);
    session.timer = undefined;
    this.#held--;
    if (this.#held === 0 && this.#whenNoneHeld !== undefined) {
      this.#whenNoneHeld.resolve();
      this.#whenNoneHeld = undefined;
    }
  }

  #create(
    clientId: string,
    seq: number,
    retained: readonly Message[],
  ): Session {
    const session = new Session({
      clientId,
      token: issueToken(clientId),
      maxBytes: this.#recovery?.maxBytes ?? 0,
      copy: this.#copy,
      seq,
      retained,
      onOverflow: this.#overflowed,
      onClose: this.#closedByHub,
    });
    this.#sessions.set(clientId, session);
    return session;
  }

  #fresh(clientId: string, info: ClientInfo): Opening {
    const session = this.#create(clientId, 0, []);
    this.#hub.add(clientId, session, info);
    return {
      session,
      recovered: false,
      previousClientId: undefined,
      seq: 0,
      info,
    };
  }

  #adopt(clientId: string, seq: number, taken: TakenOverSession): Opening {
    const session = this.#create(clientId, taken.seq, taken.frames);
    const hub = this.#hub;
    if (taken.install !== undefined) {
      taken.install(session);
    } else {
      hub.add(clientId, session, taken.info);
      if (taken.uid !== undefined) hub.bind(clientId, taken.uid);
      for (const group of taken.groups) hub.join(clientId, group);
    }
    return {
      session,
      recovered: true,
      previousClientId: taken.previousClientId,
      seq,
      info: taken.info,
    };
  }
}
