// The cluster-wide Api: routes calls about one client to the service that
// holds it, fans the others out to every member in parallel and merges the
// answers. This service's own share is served from the LocalHub, without
// RPC.

import type { CallOptions } from "@connectrpc/connect";
import type { Api, ClientInfo, Message, SendOptions } from "../../api.ts";
import {
  type ClientInfo as ProtoClientInfo,
  Scope,
} from "../../proto/gen/websocket/v1/gateway_pb.ts";
import { IncompleteResultError, type PeerFailure } from "../../errors.ts";
import { nodeIdOf } from "../hub/client_id.ts";
import type { LocalHub } from "../hub/local_hub.ts";
import type { MemberTable } from "../membership/member_table.ts";
import type { Peer, PeerPool } from "../rpc/peer_pool.ts";
import {
  encodeClose,
  encodeToAll,
  encodeToClient,
  encodeToGroups,
  encodeToUids,
} from "../delivery/codec.ts";
import { fromRpcError } from "../grpc/grpc_status.ts";
import {
  checkExclude,
  checkGroup,
  checkInfo,
  checkMessage,
  checkNames,
  checkUid,
} from "../api/validate.ts";

/** What the cluster Api works with. */
export interface ClusterApiOptions {
  readonly nodeId: string;
  readonly hub: LocalHub;
  readonly members: MemberTable;
  readonly peers: PeerPool;
  /** How long a call to a peer may take, in milliseconds. */
  readonly deadlineMs: number;
  /** The largest message the Api sends, in bytes. */
  readonly maxSendBytes: number;
}

const NODE = Scope.NODE;
const DONE = Promise.resolve();

/** The owner of a client: this service, a peer, or nobody (offline). */
type Owner = Peer | "local" | undefined;

/** The {@linkcode Api} of one service. */
export class ClusterApi implements Api {
  readonly #nodeId: string;
  readonly #hub: LocalHub;
  readonly #members: MemberTable;
  readonly #peers: PeerPool;
  readonly #call: CallOptions;
  readonly #maxSendBytes: number;

  constructor(options: ClusterApiOptions) {
    this.#maxSendBytes = options.maxSendBytes;
    this.#nodeId = options.nodeId;
    this.#hub = options.hub;
    this.#members = options.members;
    this.#peers = options.peers;
    this.#call = { timeoutMs: options.deadlineMs };
  }

  #owner(clientId: unknown): Owner {
    const nodeId = nodeIdOf(clientId);
    if (nodeId === this.#nodeId) return "local";
    const address = this.#members.addressOf(nodeId);
    return address === undefined ? undefined : this.#peers.get(address);
  }

  // ------------------------------------------------------------- sending

  sendToAll(message: Message, options?: SendOptions): Promise<void> {
    try {
      checkMessage(message, "send to all", this.#maxSendBytes);
      const exclude = checkExcludedIds(options?.exclude, "send to all");
      this.#hub.sendToAll(
        message,
        exclude.length === 0 ? undefined : new Set(exclude),
      );
      if (this.#members.peerAddresses().length === 0) return DONE;
      return this.#deliverToPeers(encodeToAll(message, exclude));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  sendToClient(clientId: string, message: Message): Promise<void> {
    try {
      checkMessage(message, "send to client", this.#maxSendBytes);
      const owner = this.#owner(clientId);
      if (owner === "local") {
        this.#hub.sendToClient(clientId, message);
        return DONE;
      }
      if (owner === undefined) return DONE;
      return owner.deliveries.send(encodeToClient(clientId, message));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  sendToUid(uid: string | readonly string[], message: Message): Promise<void> {
    try {
      checkMessage(message, "send to uid", this.#maxSendBytes);
      const uids = checkNames("uid", uid, "send to uid");
      if (uids.length === 0) return DONE;
      this.#hub.sendToUids(uids, message);
      if (this.#members.peerAddresses().length === 0) return DONE;
      return this.#deliverToPeers(encodeToUids(uids, message));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  sendToGroup(
    group: string | readonly string[],
    message: Message,
    options?: SendOptions,
  ): Promise<void> {
    try {
      checkMessage(message, "send to group", this.#maxSendBytes);
      const groups = checkNames("group", group, "send to group");
      const exclude = checkExcludedIds(options?.exclude, "send to group");
      if (groups.length === 0) return DONE;
      this.#hub.sendToGroups(
        groups,
        message,
        exclude.length === 0 ? undefined : new Set(exclude),
      );
      if (this.#members.peerAddresses().length === 0) return DONE;
      return this.#deliverToPeers(encodeToGroups(groups, message, exclude));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async closeClient(clientId: string, message?: Message): Promise<void> {
    if (message !== undefined) {
      checkMessage(message, "close client", this.#maxSendBytes);
    }
    const owner = this.#owner(clientId);
    if (owner === "local") return this.#hub.close(clientId, message);
    if (owner === undefined) return;
    await owner.deliveries.send(encodeClose(clientId, message));
  }

  /** Sends one encoded delivery to every peer. */
  async #deliverToPeers(delivery: Uint8Array): Promise<void> {
    const addresses = this.#members.peerAddresses();
    if (addresses.length === 0) return;
    if (addresses.length === 1) {
      return this.#peers.get(addresses[0]!).deliveries.send(delivery)
        .catch((error) => {
          throw new IncompleteResultError(undefined, [{
            address: addresses[0]!,
            error: fromRpcError(error, addresses[0]!),
          }]);
        });
    }
    const results = await Promise.allSettled(
      addresses.map((a) => this.#peers.get(a).deliveries.send(delivery)),
    );
    const failures = collectFailures(addresses, results);
    if (failures.length > 0) {
      throw new IncompleteResultError(undefined, failures);
    }
  }

  // ------------------------------------------------------------- clients

  async isOnline(clientId: string): Promise<boolean> {
    const owner = this.#owner(clientId);
    if (owner === "local") return this.#hub.has(clientId);
    if (owner === undefined) return false;
    return (await this.#unary(
      owner,
      (c, o) => c.isOnline({ scope: NODE, clientId }, o),
    )).online;
  }

  getAllClientIds(): Promise<string[]> {
    return this.#gather(
      [...this.#hub.clientIds()],
      async (p, o) =>
        (await p.client.getAllClientIds({ scope: NODE }, o)).clientIds,
      concat,
    );
  }

  getAllClientCount(): Promise<number> {
    return this.#gather(
      this.#hub.size,
      async (p, o) =>
        Number((await p.client.getAllClientCount({ scope: NODE }, o)).count),
      sum,
    );
  }

  // ------------------------------------------------------------- uids

  async bindUid(clientId: string, uid: string): Promise<void> {
    checkUid(uid, "bind uid");
    const owner = this.#owner(clientId);
    if (owner === "local") this.#hub.bindUid(clientId, uid);
    else if (owner !== undefined) {
      await this.#unary(
        owner,
        (c, o) => c.bindUid({ scope: NODE, clientId, uid }, o),
      );
    }
  }

  async unbindUid(clientId: string): Promise<void> {
    const owner = this.#owner(clientId);
    if (owner === "local") this.#hub.unbindUid(clientId);
    else if (owner !== undefined) {
      await this.#unary(
        owner,
        (c, o) => c.unbindUid({ scope: NODE, clientId }, o),
      );
    }
  }

  async isUidOnline(uid: string): Promise<boolean> {
    checkUid(uid, "check uid");
    if (this.#hub.hasUid(uid)) return true;
    return await this.#gather(
      false,
      async (p, o) =>
        (await p.client.isUidOnline({ scope: NODE, uid }, o)).online,
      (parts) => parts.some(Boolean),
    );
  }

  async getUidByClientId(clientId: string): Promise<string | undefined> {
    const owner = this.#owner(clientId);
    if (owner === "local") return this.#hub.uidOf(clientId);
    if (owner === undefined) return undefined;
    return (await this.#unary(
      owner,
      (c, o) => c.getUidByClientId({ scope: NODE, clientId }, o),
    )).uid;
  }

  getClientIdsByUid(uid: string): Promise<string[]> {
    try {
      checkUid(uid, "get clients by uid");
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#gather(
      [...this.#hub.clientIdsOfUid(uid)],
      async (p, o) =>
        (await p.client.getClientIdsByUid({ scope: NODE, uid }, o)).clientIds,
      concat,
    );
  }

  getAllUid(): Promise<string[]> {
    return this.#gather(
      [...this.#hub.uids()],
      async (p, o) => (await p.client.getAllUids({ scope: NODE }, o)).uids,
      union,
    );
  }

  async getAllUidCount(): Promise<number> {
    return (await this.getAllUid()).length;
  }

  // ------------------------------------------------------------- groups

  async joinGroup(clientId: string, group: string): Promise<void> {
    checkGroup(group, "join group");
    const owner = this.#owner(clientId);
    if (owner === "local") this.#hub.joinGroup(clientId, group);
    else if (owner !== undefined) {
      await this.#unary(
        owner,
        (c, o) => c.joinGroup({ scope: NODE, clientId, group }, o),
      );
    }
  }

  async leaveGroup(clientId: string, group: string): Promise<void> {
    checkGroup(group, "leave group");
    const owner = this.#owner(clientId);
    if (owner === "local") this.#hub.leaveGroup(clientId, group);
    else if (owner !== undefined) {
      await this.#unary(
        owner,
        (c, o) => c.leaveGroup({ scope: NODE, clientId, group }, o),
      );
    }
  }

  async ungroup(group: string): Promise<void> {
    checkGroup(group, "ungroup");
    this.#hub.ungroup(group);
    await this.#gather(
      undefined,
      async (p, o) => void await p.client.ungroup({ scope: NODE, group }, o),
      () => undefined,
    );
  }

  async getClientCountByGroup(group: string): Promise<number> {
    checkGroup(group, "count clients of group");
    return await this.#gather(
      this.#hub.groupSize(group),
      async (p, o) =>
        Number(
          (await p.client.getClientCountByGroup({ scope: NODE, group }, o))
            .count,
        ),
      sum,
    );
  }

  async getClientIdsByGroup(group: string): Promise<string[]> {
    checkGroup(group, "get clients of group");
    return await this.#gather(
      [...this.#hub.clientIdsOfGroup(group)],
      async (p, o) =>
        (await p.client.getClientIdsByGroup({ scope: NODE, group }, o))
          .clientIds,
      concat,
    );
  }

  async getUidsByGroup(group: string): Promise<string[]> {
    checkGroup(group, "get uids of group");
    return await this.#gather(
      [...this.#hub.uidsOfGroup(group)],
      async (p, o) =>
        (await p.client.getUidsByGroup({ scope: NODE, group }, o)).uids,
      union,
    );
  }

  async getUidCountByGroup(group: string): Promise<number> {
    return (await this.getUidsByGroup(group)).length;
  }

  getAllGroups(): Promise<string[]> {
    return this.#gather(
      [...this.#hub.groups()],
      async (p, o) => (await p.client.getAllGroups({ scope: NODE }, o)).groups,
      union,
    );
  }

  // ------------------------------------------------------------- info

  async getInfo(clientId: string): Promise<ClientInfo | undefined> {
    const owner = this.#owner(clientId);
    if (owner === "local") return this.#hub.getInfo(clientId);
    if (owner === undefined) return undefined;
    const { info } = await this.#unary(
      owner,
      (c, o) => c.getInfo({ scope: NODE, clientId }, o),
    );
    return info === undefined ? undefined : { ...info.fields };
  }

  async setInfo(clientId: string, info: ClientInfo): Promise<void> {
    checkInfo(info, "set info");
    const owner = this.#owner(clientId);
    if (owner === "local") this.#hub.setInfo(clientId, info);
    else if (owner !== undefined) {
      await this.#unary(
        owner,
        (c, o) => c.setInfo({ scope: NODE, clientId, info }, o),
      );
    }
  }

  async updateInfo(clientId: string, info: ClientInfo): Promise<void> {
    checkInfo(info, "update info");
    const owner = this.#owner(clientId);
    if (owner === "local") this.#hub.updateInfo(clientId, info);
    else if (owner !== undefined) {
      await this.#unary(
        owner,
        (c, o) => c.updateInfo({ scope: NODE, clientId, info }, o),
      );
    }
  }

  async getClientInfosByGroup(
    group: string,
  ): Promise<Record<string, ClientInfo>> {
    checkGroup(group, "get infos of group");
    return await this.#gather(
      this.#hub.infos(this.#hub.clientIdsOfGroup(group)),
      async (p, o) =>
        fromProtoInfos(
          (await p.client.getClientInfosByGroup({ scope: NODE, group }, o))
            .infos,
        ),
      mergeRecords,
    );
  }

  getAllClientInfos(): Promise<Record<string, ClientInfo>> {
    return this.#gather(
      this.#hub.infos(),
      async (p, o) =>
        fromProtoInfos(
          (await p.client.getAllClientInfos({ scope: NODE }, o)).infos,
        ),
      mergeRecords,
    );
  }

  // ------------------------------------------------------------- plumbing

  async #unary<T>(
    peer: Peer,
    call: (client: Peer["client"], options: CallOptions) => Promise<T>,
  ): Promise<T> {
    try {
      return await call(peer.client, this.#call);
    } catch (error) {
      throw fromRpcError(error, peer.address);
    }
  }

  /**
   * Asks every peer in parallel and merges their answers with this
   * service's own. Rejects with an IncompleteResultError carrying the
   * merged partial answer when some peers fail.
   */
  async #gather<T, R>(
    local: T,
    remote: (peer: Peer, options: CallOptions) => Promise<T>,
    merge: (parts: T[]) => R,
  ): Promise<R> {
    const addresses = this.#members.peerAddresses();
    const parts = [local];
    if (addresses.length === 0) return merge(parts);
    const results = await Promise.allSettled(
      addresses.map((a) => remote(this.#peers.get(a), this.#call)),
    );
    for (const result of results) {
      if (result.status === "fulfilled") parts.push(result.value);
    }
    const failures = collectFailures(addresses, results);
    const merged = merge(parts);
    if (failures.length > 0) throw new IncompleteResultError(merged, failures);
    return merged;
  }
}

/** The excluded clientIds of send options, each a well-formed clientId. */
function checkExcludedIds(exclude: unknown, action: string): string[] {
  const ids = checkExclude(exclude, action);
  for (const id of ids) nodeIdOf(id);
  return ids;
}

function collectFailures(
  addresses: readonly string[],
  results: PromiseSettledResult<unknown>[],
): PeerFailure[] {
  const failures: PeerFailure[] = [];
  results.forEach((result, i) => {
    if (result.status === "rejected") {
      const address = addresses[i]!;
      failures.push({ address, error: fromRpcError(result.reason, address) });
    }
  });
  return failures;
}

function sum(parts: number[]): number {
  let total = 0;
  for (const n of parts) total += n;
  return total;
}

function concat(parts: string[][]): string[] {
  return parts.flat();
}

function union(parts: string[][]): string[] {
  return [...new Set(parts.flat())];
}

function mergeRecords(
  parts: Record<string, ClientInfo>[],
): Record<string, ClientInfo> {
  return Object.assign({}, ...parts);
}

function fromProtoInfos(
  infos: { [clientId: string]: ProtoClientInfo },
): Record<string, ClientInfo> {
  const out: Record<string, ClientInfo> = {};
  for (const [clientId, info] of Object.entries(infos)) {
    out[clientId] = { ...info.fields };
  }
  return out;
}
