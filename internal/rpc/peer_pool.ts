// The peers of a service over gRPC: one HTTP/2 connection per peer, opened
// on first use and reused, with keepalive pings. Calls for a peer's share
// of an Api method go as unary GatewayService calls with node scope, their
// requests and responses made by the method table's codecs; deliveries go
// on one DeliveryLink per peer, which starts on the Deliver stream and
// moves to the peer's delivery port when it can.

import type { DescMethodUnary } from "npm:@bufbuild/protobuf@2.17.0";
import type { Interceptor } from "npm:@connectrpc/connect@2.2.0";
import {
  GatewayService,
  Scope,
} from "../../proto/gen/websocket/v1/gateway_pb.ts";
import { parseHostPort } from "../base/address.ts";
import { nodeTokenOf } from "../base/node_proof.ts";
import type { Logger } from "../base/logger.ts";
import type { Fields } from "../api/codecs.ts";
import {
  type ApiArgs,
  type ApiMethod,
  type ApiResult,
  argCodecsOf,
  METHODS,
} from "../api/method_table.ts";
import type { Peer, Peers } from "../cluster/peers.ts";
import {
  type DeliveryCounts,
  DeliveryLink,
  type LinkHoldings,
  type LinkTransport,
} from "../delivery/delivery_link.ts";
import { GrpcBatchSender } from "../delivery/grpc_sender.ts";
import { LinkIds } from "../delivery/link_id.ts";
import { PortBatchSender } from "../delivery/port_sender.ts";
import {
  openRpcChannel,
  type RpcChannel,
  type RpcChannelOptions,
} from "../grpc/rpc_channel.ts";
import { fromRpcError } from "../grpc/grpc_status.ts";
import { sessionCallsTo } from "./session_rpc.ts";

/** Options of {@linkcode PeerPool}. */
export interface PeerPoolOptions extends RpcChannelOptions {
  /** Bytes that may wait for one peer before sends to it fail. */
  readonly maxQueuedBytes: number;
  /**
   * How long a call to a peer may take, and a delivery may wait for the
   * peer's acknowledgement.
   */
  readonly deadlineMs: number;
  /** Run on every call to a peer. */
  readonly interceptors?: readonly Interceptor[] | undefined;
  /** Observes each delivery batch's latency, in seconds. */
  readonly deliveryLatency?: { observe(seconds: number): void } | undefined;
  readonly logger?: Logger | undefined;
  /** Counts the deliveries queued and the batches written. */
  readonly counts?: DeliveryCounts | undefined;
  /**
   * Keeps each peer's view of this service's holdings (holder routing);
   * unset, links carry no holder announcements.
   */
  readonly holdings?: LinkHoldings | undefined;
}

interface GrpcPeer extends Peer {
  readonly channel: RpcChannel;
  readonly deliveries: DeliveryLink;
  /** Calls not answered yet: a peer that leaves gets to answer them. */
  readonly inflight: Set<Promise<unknown>>;
}

/** The peers this service talks to, by RPC address. */
export class PeerPool implements Peers {
  readonly #options: PeerPoolOptions;
  readonly #peers = new Map<string, GrpcPeer>();
  /**
   * Names every delivery connection this service opens, to any peer and
   * across links (a peer that left and came back gets a new link), so that
   * a receiver applies batches from the newest one only.
   */
  readonly #linkIds = new LinkIds();

  constructor(options: PeerPoolOptions) {
    this.#options = options;
  }

  /** The peer at `address`, connecting on first use. */
  get(address: string): GrpcPeer {
    let peer = this.#peers.get(address);
    if (peer === undefined) {
      const channel = openRpcChannel(address, this.#options);
      const { deadlineMs } = this.#options;
      const inflight = new Set<Promise<unknown>>();
      const track = <T>(call: Promise<T>): Promise<T> => {
        inflight.add(call);
        call.finally(() => inflight.delete(call)).catch(() => {});
        return call;
      };
      const sessions = sessionCallsTo(channel, address, deadlineMs);
      peer = {
        address,
        channel,
        inflight,
        call: <M extends ApiMethod>(method: M, args: ApiArgs<M>) =>
          track(callPeer(channel, address, deadlineMs, method, args)),
        deliveries: new DeliveryLink(
          this.#linkTransport(address, channel),
          address,
          this.#options,
        ),
        sessions: {
          takeOver: (request) => track(sessions.takeOver(request)),
          fence: (clientId, newClientId) =>
            track(sessions.fence(clientId, newClientId)),
          handOver: (clientId, newClientId) =>
            track(sessions.handOver(clientId, newClientId)),
          received: (clientId, newClientId) =>
            track(sessions.received(clientId, newClientId)),
        },
      };
      this.#peers.set(address, peer);
    }
    return peer;
  }

  #linkTransport(address: string, channel: RpcChannel): LinkTransport {
    const { tls } = this.#options;
    const { host } = parseHostPort(address, "peer address");
    const dial = async (port: number): Promise<Deno.Conn> => {
      if (tls !== undefined) {
        return await Deno.connectTls({
          hostname: host,
          port,
          ...(tls.ca === undefined ? {} : { caCerts: [tls.ca] }),
        });
      }
      const conn = await Deno.connect({ hostname: host, port });
      conn.setNoDelay(true);
      return conn;
    };
    return {
      open: (events) =>
        new GrpcBatchSender(
          channel.openCall,
          address,
          events,
          this.#linkIds.next(),
        ),
      // The hello carries the proof of the gRPC channel to the same peer.
      openPort: (port, events) =>
        new PortBatchSender(
          () => dial(port),
          async () => {
            const value = await channel.authorization();
            return value === undefined ? undefined : nodeTokenOf(value);
          },
          address,
          events,
          this.#linkIds.next(),
        ),
    };
  }

  /** Closes the peers whose address is not in `addresses`. */
  retain(addresses: readonly string[]): void {
    const keep = new Set(addresses);
    for (const [address, peer] of this.#peers) {
      if (keep.has(address)) continue;
      this.#peers.delete(address);
      closePeer(peer, true);
    }
  }

  /** Bytes of deliveries that wait for peers (queued, not acknowledged). */
  get queuedBytes(): number {
    let bytes = 0;
    for (const peer of this.#peers.values()) {
      bytes += peer.deliveries.queuedBytes;
    }
    return bytes;
  }

  /** Resolves when every delivery queued so far was acknowledged or failed. */
  async drained(): Promise<void> {
    const links = [...this.#peers.values()].map((p) => p.deliveries.drained());
    await Promise.all(links);
  }

  /** Closes every peer. */
  close(): void {
    for (const peer of this.#peers.values()) closePeer(peer);
    this.#peers.clear();
  }
}

/**
 * Calls `method` on the peer with node scope: the request made from `args`
 * by the table's codecs, the result read from the response.
 */
async function callPeer<M extends ApiMethod>(
  channel: RpcChannel,
  address: string,
  deadlineMs: number,
  method: M,
  args: ApiArgs<M>,
): Promise<ApiResult<M>> {
  const spec = METHODS[method];
  const request: Fields = { scope: Scope.NODE };
  argCodecsOf(method).forEach((codec, i) => codec.toRequest(args[i], request));
  try {
    const response = await channel.transport.unary(
      GatewayService.method[spec.rpc] as DescMethodUnary,
      undefined,
      deadlineMs,
      undefined,
      request,
    );
    return spec.result.fromResponse(response.message as Fields);
  } catch (error) {
    throw fromRpcError(error, address);
  }
}

/**
 * Closes a peer's link and channel; the channel of a peer that left stays
 * until the calls on their way have their answers (the last step of a
 * session takeover, say, that a closing peer answered as it left).
 */
function closePeer(peer: GrpcPeer, left = false): void {
  peer.deliveries.close(left);
  if (!left || peer.inflight.size === 0) {
    peer.channel.close();
    return;
  }
  Promise.allSettled([...peer.inflight]).then(() => peer.channel.close());
}
