// What cluster routing needs of the other services: the member list, and a
// way to call each peer. The gRPC implementation is internal/rpc/peer_pool.ts;
// unit tests connect services in memory.

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
}

/** Where deliveries to one peer are queued. */
export interface DeliverySink {
  /**
   * Queues one encoded delivery (copied at once); resolves when the peer
   * applied it, rejects with a GatewayError when it could not.
   */
  send(delivery: Uint8Array): Promise<void>;
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
