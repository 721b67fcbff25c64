// What cluster routing needs of the other services: the member list, and a
// way to call each peer. The gRPC implementation is internal/rpc/peer_pool.ts;
// unit tests connect services in memory.

import type { ClientInfo, Message } from "../../api.ts";
import type { ApiArgs, ApiMethod, ApiResult } from "../api/method_table.ts";

/** The services of the cluster, as this one knows them. */
export interface Members {
  /** The RPC address of a member, or undefined for an unknown node. */
  addressOf(nodeId: string): string | undefined;
  /** The RPC addresses of every member but this service, each once. */
  peerAddresses(): readonly string[];
}

/** One peer service. */
export interface Peer {
  /** Its RPC address, `host:port`. */
  readonly address: string;
  /**
   * Asks the peer for its share of a call, about its own clients only
   * (node scope). Rejects with a GatewayError when the peer cannot answer
   * (unreachable, refused, or late).
   */
  call<M extends ApiMethod>(method: M, args: ApiArgs<M>): Promise<ApiResult<M>>;
  /** Ordered, batched deliveries to the peer's clients. */
  readonly deliveries: DeliverySink;
  /**
   * The calls of a session takeover (docs/recovery.md); undefined where
   * the peers have none (in-memory unit tests).
   */
  readonly sessions?: SessionCalls | undefined;
}

/**
 * The three steps of a session takeover, as one service asks another: the
 * same shape serves both ends (internal/rpc/ carries them over gRPC).
 * Each rejects with a GatewayError when the peer cannot answer.
 */
export interface SessionCalls {
  /**
   * On the holder of a detached session: checks `token` and whether every
   * frame after `seq` is kept, freezes the session and answers its state.
   */
  takeOver(request: TakeOverRequest): Promise<TakeOverAnswer>;
  /**
   * On every member: cuts its sends to session `clientId` from those to
   * `newClientId` (a FENCE on its links to both services) and resolves
   * once both applied it.
   */
  fence(clientId: string, newClientId: string): Promise<void>;
  /** On the holder: the frames after the client's seq. */
  handOver(clientId: string, newClientId: string): Promise<HandOverAnswer>;
  /**
   * On the holder: the taker has the frames, the session is dropped (its
   * clientId goes offline, its uid and groups are released there).
   */
  received(clientId: string, newClientId: string): Promise<void>;
}

/** What a service asks the holder of a session it takes over. */
export interface TakeOverRequest {
  /** The resume token the client gave. */
  readonly token: string;
  /** The seq of the last data frame the client received. */
  readonly seq: number;
  /** The clientId the session gets on the caller. */
  readonly newClientId: string;
}

/** The holder's answer: the frozen session's state, or no session. */
export type TakeOverAnswer =
  | { readonly recovered: false }
  | {
    readonly recovered: true;
    /** The session's clientId on the holder. */
    readonly clientId: string;
    readonly uid: string | undefined;
    readonly groups: readonly string[];
    readonly info: ClientInfo;
  };

/** The holder's last answer: the frames the client missed, or none. */
export type HandOverAnswer =
  | { readonly recovered: false }
  | {
    readonly recovered: true;
    /** The seq of `frames[0]`: the client's seq + 1. */
    readonly firstSeq: number;
    /**
     * The data frames after the client's seq, in order, as the client gets
     * them (each with its seq).
     */
    readonly frames: readonly Message[];
  };

/** Where deliveries to one peer are queued. */
export interface DeliverySink {
  /**
   * Queues one encoded delivery (copied at once); resolves when the peer
   * applied it, rejects with a GatewayError when it could not.
   */
  send(delivery: Uint8Array): Promise<void>;
  /**
   * Queues a FENCE delivery like `send`; for a while (longer than a
   * takeover) the peer is then told on every new connection which service
   * the batches come from (`announcement`, a FENCE that names this service
   * only). Undefined where peers take no part in takeovers.
   */
  readonly fence?:
    | ((delivery: Uint8Array, announcement: Uint8Array) => Promise<void>)
    | undefined;
  /**
   * Queues a holder announcement where the peer applies it after this
   * service's snapshot; resolves when the peer applied it (or the snapshot
   * that carries it), undefined when there is nothing to wait for. Unset:
   * the peer is told nothing of holdings.
   */
  announce?(delivery: Uint8Array): Promise<void> | undefined;
  /** Opens the connection now, so that the peer gets the snapshot. */
  connect?(): void;
}

/** The peers, by RPC address. */
export interface Peers {
  /** The peer at `address`, connecting on first use. */
  get(address: string): Peer;
}
