// The cluster implementation of every Api method: this service's share of
// the call (what it does with its own clients, in the LocalHub, which is
// also what it answers a peer that asks with node scope), and how the
// shares of the cluster make the answer. cluster_api.ts routes each call
// by the table's route (internal/api/method_table.ts) and this.

import type { Message, SendOptions } from "../../api.ts";
import type { ApiArgs, ApiMethod, ApiResult } from "../api/method_table.ts";
import type { DeliveryEncoder } from "../delivery/codec.ts";
import type { LocalHub } from "../hub/local_hub.ts";
import type { HolderKind } from "./holder_index.ts";

/** This service's share of a call: what it does with its own clients. */
export type LocalShare<M extends ApiMethod> = (
  hub: LocalHub,
  ...args: ApiArgs<M>
) => ApiResult<M>;

/**
 * A call about one client, carried out on the service that holds it (the
 * table's route `owner`).
 */
export interface Owned<M extends ApiMethod> {
  readonly kind: "owned";
  /** On the owner; the client may have gone meanwhile. */
  readonly local: LocalShare<M>;
  /** The answer for a client that is offline or whose service is gone. */
  readonly offline: ApiResult<M>;
}

/** A call that every service answers (route `everyone`), merged. */
export interface Gathered<M extends ApiMethod> {
  readonly kind: "gathered";
  readonly local: LocalShare<M>;
  /** The answer of the cluster from the answers of its services. */
  merge(parts: ApiResult<M>[]): ApiResult<M>;
  /** Whether this service's answer is the answer: peers are not asked. */
  readonly enough?: (local: ApiResult<M>) => boolean;
  /**
   * With holder routing, only the peers that hold the uid or group named
   * by the first argument are asked (holder_index.ts); unset, every peer.
   */
  readonly holders?: HolderKind;
}

/**
 * A call whose cluster answer comes from another method's (route
 * `everyone`): a count of distinct uids from the list of them.
 */
export interface Derived<M extends ApiMethod> {
  readonly kind: "derived";
  /** What this service answers a peer that asks with node scope. */
  readonly local: LocalShare<M>;
  /** The method, with the same arguments, whose answer it is made from. */
  readonly from: ApiMethod;
  /** The answer, from `from`'s answer. */
  then(answer: never): ApiResult<M>;
}

/** A send (route `delivery`), carried by the peers' delivery links. */
export interface Delivered<M extends ApiMethod> {
  readonly kind: "delivered";
  readonly local: LocalShare<M>;
  /**
   * Which peers get it: the owner of the client named by the first
   * argument, or every peer.
   */
  readonly to: "owner" | "everyone";
  /** The delivery that carries it to a peer. */
  encode(encoder: DeliveryEncoder, ...args: ApiArgs<M>): Uint8Array;
  /** Whether the call reaches nobody (an empty list of names). */
  readonly skip?: (...args: ApiArgs<M>) => boolean;
  /**
   * With holder routing, a send to everyone goes only to the peers that
   * hold the uids or groups named by the first argument.
   */
  readonly holders?: HolderKind;
}

/** The cluster implementation of one method. */
export type ClusterMethod<M extends ApiMethod> =
  | Owned<M>
  | Gathered<M>
  | Derived<M>
  | Delivered<M>;

/** The cluster implementation of every method. */
export type ClusterMethods = { readonly [M in ApiMethod]: ClusterMethod<M> };

/** Checked names: a list (validate.ts turns one name into a list). */
function list(names: string | readonly string[]): readonly string[] {
  return typeof names === "string" ? [names] : names;
}

/** The excluded clientIds of checked send options, as a set if any. */
function excludeSet(options: SendOptions | undefined) {
  const exclude = options?.exclude;
  return exclude === undefined || exclude.length === 0
    ? undefined
    : new Set(exclude);
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

function mergeRecords<T>(parts: Record<string, T>[]): Record<string, T> {
  return Object.assign({}, ...parts);
}

function count(values: string[]): number {
  return values.length;
}

/** Every Api method's cluster implementation. */
export const CLUSTER_METHODS: ClusterMethods = {
  sendToAll: {
    kind: "delivered",
    to: "everyone",
    local: (hub, message, options) => hub.toAll(message, excludeSet(options)),
    encode: (encoder, message, options) =>
      encoder.toAll(message, options?.exclude ?? []),
  },
  sendToClient: {
    kind: "delivered",
    to: "owner",
    local: (hub, clientId, message) => hub.toClient(clientId, message),
    encode: (encoder, clientId, message) => encoder.toClient(clientId, message),
  },
  sendToUid: {
    kind: "delivered",
    to: "everyone",
    local: (hub, uids, message) => hub.toUids(list(uids), message),
    encode: (encoder, uids, message) => encoder.toUids(list(uids), message),
    skip: (uids) => list(uids).length === 0,
    holders: "uid",
  },
  sendToGroup: {
    kind: "delivered",
    to: "everyone",
    local: (hub, groups, message, options) =>
      hub.toGroups(list(groups), message, excludeSet(options)),
    encode: (encoder, groups, message, options) =>
      encoder.toGroups(list(groups), message, options?.exclude ?? []),
    skip: (groups) => list(groups).length === 0,
    holders: "group",
  },
  closeClient: {
    kind: "delivered",
    to: "owner",
    local: (hub, clientId, message?: Message) => hub.close(clientId, message),
    encode: (encoder, clientId, message) => encoder.close(clientId, message),
  },

  bindUid: {
    kind: "owned",
    local: (hub, clientId, uid) => void hub.bind(clientId, uid),
    offline: undefined,
  },
  unbindUid: {
    kind: "owned",
    local: (hub, clientId) => hub.unbind(clientId),
    offline: undefined,
  },
  isUidOnline: {
    kind: "gathered",
    local: (hub, uid) => hub.hasUid(uid),
    merge: (parts) => parts.some(Boolean),
    enough: (online) => online,
    holders: "uid",
  },
  getUidByClientId: {
    kind: "owned",
    local: (hub, clientId) => hub.uidOf(clientId),
    offline: undefined,
  },
  getClientIdsByUid: {
    kind: "gathered",
    local: (hub, uid) => [...hub.clientsOfUid(uid)],
    merge: concat,
    holders: "uid",
  },
  getAllUids: {
    kind: "gathered",
    local: (hub) => [...hub.uids()],
    merge: union,
  },
  getAllUid: {
    kind: "derived",
    local: (hub) => [...hub.uids()],
    from: "getAllUids",
    then: (uids: string[]) => uids,
  },
  getAllUidCount: {
    kind: "derived",
    local: (hub) => hub.uidCount,
    from: "getAllUids",
    then: count,
  },

  joinGroup: {
    kind: "owned",
    local: (hub, clientId, group) => void hub.join(clientId, group),
    offline: undefined,
  },
  leaveGroup: {
    kind: "owned",
    local: (hub, clientId, group) => hub.leave(clientId, group),
    offline: undefined,
  },
  ungroup: {
    kind: "gathered",
    local: (hub, group) => hub.disband(group),
    merge: () => undefined,
    holders: "group",
  },
  getClientCountByGroup: {
    kind: "gathered",
    local: (hub, group) => hub.groupSize(group),
    merge: sum,
    holders: "group",
  },
  getClientIdsByGroup: {
    kind: "gathered",
    local: (hub, group) => [...hub.clientsOfGroup(group)],
    merge: concat,
    holders: "group",
  },
  getUidsByGroup: {
    kind: "gathered",
    local: (hub, group) => [...hub.uidsOfGroup(group)],
    merge: union,
    holders: "group",
  },
  getUidCountByGroup: {
    kind: "derived",
    local: (hub, group) => hub.uidsOfGroup(group).size,
    from: "getUidsByGroup",
    then: count,
  },
  getAllGroups: {
    kind: "gathered",
    local: (hub) => [...hub.groups()],
    merge: union,
  },

  getAllClientIds: {
    kind: "gathered",
    local: (hub) => [...hub.clientIds()],
    merge: concat,
  },
  getAllClientCount: {
    kind: "gathered",
    local: (hub) => hub.size,
    merge: sum,
  },
  isOnline: {
    kind: "owned",
    local: (hub, clientId) => hub.has(clientId),
    offline: false,
  },

  getInfo: {
    kind: "owned",
    local: (hub, clientId) => hub.infoOf(clientId),
    offline: undefined,
  },
  setInfo: {
    kind: "owned",
    local: (hub, clientId, info) => hub.replaceInfo(clientId, info),
    offline: undefined,
  },
  updateInfo: {
    kind: "owned",
    local: (hub, clientId, info) => hub.mergeInfo(clientId, info),
    offline: undefined,
  },
  getClientInfosByGroup: {
    kind: "gathered",
    local: (hub, group) => hub.infos(hub.clientsOfGroup(group)),
    merge: mergeRecords,
    holders: "group",
  },
  getAllClientInfos: {
    kind: "gathered",
    local: (hub) => hub.infos(),
    merge: mergeRecords,
  },
};
