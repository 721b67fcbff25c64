// Test helpers: services connected in memory, for unit tests of cluster
// routing. Each node has the real LocalHub and the real cluster Api
// (createClusterApi); its peers are the other nodes, asked for their share
// of a call with the same function that answers gRPC calls with node scope
// (answerForNode), and delivered to with the same decoder that applies
// batches from the wire. What each node was asked is recorded.

import type { Api, GatewayError, Message } from "../../mod.ts";
import type { ApiMethod } from "../../internal/api/method_table.ts";
import {
  answerForNode,
  createClusterApi,
} from "../../internal/cluster/cluster_api.ts";
import type { Members, Peer, Peers } from "../../internal/cluster/peers.ts";
import { applyBatch } from "../../internal/delivery/codec.ts";
import {
  ClientIdAllocator,
  createNodeId,
} from "../../internal/hub/client_id.ts";
import type { InfoBounds } from "../../internal/hub/info_size.ts";
import { type ClientSocket, LocalHub } from "../../internal/hub/local_hub.ts";

/** A socket that records what it was sent and how it was closed. */
export class RecordingSocket implements ClientSocket {
  readonly sent: Message[] = [];
  closed: [code: number, reason: string] | undefined;
  send(message: Message): void {
    if (this.closed === undefined) this.sent.push(message);
  }
  close(code: number, reason: string): void {
    this.closed ??= [code, reason];
  }
}

/** One service of a memory cluster. */
export class MemoryNode {
  readonly nodeId: string = createNodeId();
  readonly address: string = `memory:${this.nodeId}`;
  readonly hub: LocalHub;
  readonly sockets: Map<string, RecordingSocket> = new Map();
  /** The methods its peers asked it for, in order. */
  readonly asked: ApiMethod[] = [];
  /** Deliveries applied from peers. */
  delivered = 0;
  /** While set, calls and deliveries to it fail with this error. */
  failure: GatewayError | undefined;
  api!: Api;
  readonly #ids = new ClientIdAllocator(this.nodeId);

  constructor(infoBounds?: InfoBounds) {
    this.hub = new LocalHub(infoBounds === undefined ? {} : { infoBounds });
  }

  /** Connects a client; returns its clientId. */
  connect(): string {
    const id = this.#ids.next();
    const socket = new RecordingSocket();
    this.sockets.set(id, socket);
    this.hub.add(id, socket);
    return id;
  }

  /** What the client `id` was sent. */
  sent(id: string): Message[] {
    return this.sockets.get(id)!.sent;
  }
}

/** Options of {@linkcode memoryCluster}. */
export interface MemoryClusterOptions {
  /** @default {1024} */
  maxSendBytes?: number;
  /** @default {64} */
  maxInfoKeys?: number;
  /** @default {16384} */
  maxInfoBytes?: number;
}

/** `n` services that know each other. */
export function memoryCluster(
  n: number,
  options: MemoryClusterOptions = {},
): MemoryNode[] {
  const {
    maxSendBytes = 1024,
    maxInfoKeys = 64,
    maxInfoBytes = 16384,
  } = options;
  const limits = { maxSendBytes, maxInfoKeys, maxInfoBytes };
  const nodes = Array.from({ length: n }, () => new MemoryNode(limits));
  const byAddress = new Map(nodes.map((node) => [node.address, node]));
  const peerOf = (node: MemoryNode): Peer => ({
    address: node.address,
    call(method, args) {
      if (node.failure !== undefined) return Promise.reject(node.failure);
      return Promise.resolve().then(() => {
        node.asked.push(method);
        return answerForNode(node.hub, node.nodeId, method, args, limits);
      });
    },
    deliveries: {
      send(delivery) {
        if (node.failure !== undefined) return Promise.reject(node.failure);
        const copy = delivery.slice();
        return Promise.resolve().then(() => {
          node.delivered++;
          applyBatch(node.hub, copy);
        });
      },
    },
  });
  const peers: Peers = {
    get(address) {
      const node = byAddress.get(address);
      if (node === undefined) throw new Error(`no node at ${address}`);
      return peerOf(node);
    },
  };
  for (const node of nodes) {
    const others = nodes.filter((n) => n !== node).map((n) => n.address);
    const members: Members = {
      addressOf: (nodeId) => nodes.find((n) => n.nodeId === nodeId)?.address,
      peerAddresses: () => others,
    };
    node.api = createClusterApi({
      nodeId: node.nodeId,
      hub: node.hub,
      members,
      peers,
      limits,
    });
  }
  return nodes;
}
