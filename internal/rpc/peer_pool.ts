// Connections to the other services: one HTTP/2 connection per peer,
// opened on first use and reused, with keepalive pings.

import {
  type Client,
  createClient,
  type Interceptor,
} from "@connectrpc/connect";
import { GatewayService } from "../../proto/gen/websocket/v1/gateway_pb.ts";
import {
  openRpcChannel,
  type RpcChannel,
  type RpcChannelOptions,
} from "../grpc/rpc_channel.ts";
import {
  type DeliveryCounts,
  DeliveryLink,
  type PeerDialer,
} from "../delivery/delivery_link.ts";
import type { Histogram } from "../ops/prometheus.ts";
import { parseHostPort } from "../base/address.ts";
import type { Logger } from "../base/logger.ts";

/** Options of {@linkcode PeerPool}. */
export interface PeerPoolOptions extends RpcChannelOptions {
  /** Bytes that may wait for one peer before sends to it fail. */
  readonly maxQueuedBytes: number;
  /** How long a delivery may wait for the peer's acknowledgement. */
  readonly deadlineMs: number;
  /** Run on every call to a peer. */
  readonly interceptors?: readonly Interceptor[] | undefined;
  /** Observes each delivery batch's latency, in seconds. */
  readonly deliveryLatency?: Histogram | undefined;
  readonly logger?: Logger | undefined;
  /** Counts the deliveries queued and the batches written. */
  readonly counts?: DeliveryCounts | undefined;
}

/** One peer service. */
export interface Peer {
  readonly address: string;
  /** Unary calls. */
  readonly client: Client<typeof GatewayService>;
  /** Ordered, batched deliveries. */
  readonly deliveries: DeliveryLink;
}

interface Entry extends Peer {
  readonly channel: RpcChannel;
}

/** The peers this service talks to, by RPC address. */
export class PeerPool {
  readonly #options: PeerPoolOptions;
  readonly #peers = new Map<string, Entry>();

  constructor(options: PeerPoolOptions) {
    this.#options = options;
  }

  /** The peer at `address`, connecting on first use. */
  get(address: string): Peer {
    let peer = this.#peers.get(address);
    if (peer === undefined) {
      const channel = openRpcChannel(address, this.#options);
      const client = createClient(GatewayService, channel.transport);
      peer = {
        address,
        channel,
        client,
        deliveries: new DeliveryLink(
          this.#dialer(address, channel),
          address,
          this.#options,
        ),
      };
      this.#peers.set(address, peer);
    }
    return peer;
  }

  #dialer(address: string, channel: RpcChannel): PeerDialer {
    const { secret, tls } = this.#options;
    const { host } = parseHostPort(address, "peer address");
    const dialDeliveryPort = async (port: number): Promise<Deno.Conn> => {
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
    return { openCall: channel.openCall, secret, dialDeliveryPort };
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

function closePeer(peer: Entry, left = false): void {
  peer.deliveries.close(left);
  peer.channel.close();
}
