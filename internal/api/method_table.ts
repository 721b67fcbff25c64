// The Api method table: every method of the Api once, with its arguments,
// its result, how the cluster routes it, and the gRPC method of
// gateway.proto that carries it. What is the same for every method is
// derived from here: the metered Api and its metric labels
// (metered_api.ts), the HTTP API (internal/ops/http_api.ts), the gRPC
// handlers for backends and peers and the calls to peers (internal/rpc/).
// What each method does is its cluster implementation
// (internal/cluster/cluster_methods.ts).
//
// Adding a method: the Api type (api.ts), an entry here, its cluster
// implementation, and its RPC in gateway.proto. tests/unit/method_table_test.ts
// fails when the table, the Api type and the proto disagree.

import type { Api } from "../../api.ts";
import type { GatewayService } from "../../proto/gen/websocket/v1/gateway_pb.ts";
import {
  type ArgCodec,
  clientId,
  count,
  flag,
  group,
  info,
  infos,
  message,
  names,
  none,
  optionalInfo,
  optionalMessage,
  optionalString,
  type ResultCodec,
  sendOptions,
  strings,
  uid,
} from "./codecs.ts";

/** The name of an Api method. */
export type ApiMethod = keyof Api;

/** The arguments of an Api method. */
export type ApiArgs<M extends ApiMethod> = Parameters<Api[M]>;

/** What an Api method resolves with. */
export type ApiResult<M extends ApiMethod> = Awaited<ReturnType<Api[M]>>;

/** The methods of GatewayService that carry an Api method. */
export type RpcMethod = Exclude<
  keyof typeof GatewayService.method,
  "deliver"
>;

/**
 * How a service carries out a call:
 *
 * - `owner`: on the service that holds the client named by the first
 *   argument (this one, a peer, or none when it is offline);
 * - `everyone`: on every service, this one included, merging the answers;
 * - `delivery`: as a delivery on the ordered links to the peers (to the
 *   owner of the client, or to every peer), and on this service.
 */
export type Route = "owner" | "everyone" | "delivery";

/** A codec for each of the arguments `A`. */
export type ArgCodecs<A extends readonly unknown[]> = {
  readonly [K in keyof A]: ArgCodec<A[K]>;
};

/** What every entry of the table has. */
interface MethodSpecBase<M extends ApiMethod> {
  /** What the call does, as its errors say: `Cannot <action>: ...`. */
  readonly action: string;
  readonly route: Route;
  /** One codec per parameter, in order. */
  readonly args: ArgCodecs<ApiArgs<M>>;
  readonly result: ResultCodec<ApiResult<M>>;
}

/**
 * One entry of the table. A method has one name on every surface: the Api
 * method `getAllUids` is `POST /api/getAllUids` over HTTP and `GetAllUids`
 * over gRPC, so `rpc` must be the method's own name (the type says so). The
 * one exception is a deprecated old name (`aliasOf`): it calls the method it
 * names, rides that method's RPC, and the HTTP API answers it with a
 * `Deprecation` header.
 */
export type MethodSpec<M extends ApiMethod> =
  & MethodSpecBase<M>
  & (M extends RpcMethod ? {
      /** The gRPC method that carries it: the method's own name. */
      readonly rpc: M;
      readonly aliasOf?: never;
    }
    : {
      /** The gRPC method of {@linkcode aliasOf}. */
      readonly rpc: RpcMethod;
      /** The method this old name calls. */
      readonly aliasOf: ApiMethod & RpcMethod;
    });

/** The table's type: an entry for every method of the Api. */
export type MethodTable = { readonly [M in ApiMethod]: MethodSpec<M> };

const payload = message("payload");
const uids = names("uid", "uid", "uids");
const groups = names("group", "group", "groups");

/** Every Api method. */
export const METHODS: MethodTable = {
  sendToAll: {
    action: "send to all",
    route: "delivery",
    rpc: "sendToAll",
    args: [payload, sendOptions],
    result: none,
  },
  sendToClient: {
    action: "send to client",
    route: "delivery",
    rpc: "sendToClient",
    args: [clientId, payload],
    result: none,
  },
  sendToUid: {
    action: "send to uid",
    route: "delivery",
    rpc: "sendToUid",
    args: [uids, payload],
    result: none,
  },
  sendToGroup: {
    action: "send to group",
    route: "delivery",
    rpc: "sendToGroup",
    args: [groups, payload, sendOptions],
    result: none,
  },
  bindUid: {
    action: "bind uid",
    route: "owner",
    rpc: "bindUid",
    args: [clientId, uid],
    result: none,
  },
  unbindUid: {
    action: "unbind uid",
    route: "owner",
    rpc: "unbindUid",
    args: [clientId],
    result: none,
  },
  isUidOnline: {
    action: "check uid",
    route: "everyone",
    rpc: "isUidOnline",
    args: [uid],
    result: flag("online"),
  },
  getUidByClientId: {
    action: "get uid of client",
    route: "owner",
    rpc: "getUidByClientId",
    args: [clientId],
    result: optionalString("uid"),
  },
  getClientIdsByUid: {
    action: "get clients by uid",
    route: "everyone",
    rpc: "getClientIdsByUid",
    args: [uid],
    result: strings("clientIds"),
  },
  joinGroup: {
    action: "join group",
    route: "owner",
    rpc: "joinGroup",
    args: [clientId, group],
    result: none,
  },
  leaveGroup: {
    action: "leave group",
    route: "owner",
    rpc: "leaveGroup",
    args: [clientId, group],
    result: none,
  },
  ungroup: {
    action: "ungroup",
    route: "everyone",
    rpc: "ungroup",
    args: [group],
    result: none,
  },
  getClientCountByGroup: {
    action: "count clients of group",
    route: "everyone",
    rpc: "getClientCountByGroup",
    args: [group],
    result: count,
  },
  getClientIdsByGroup: {
    action: "get clients of group",
    route: "everyone",
    rpc: "getClientIdsByGroup",
    args: [group],
    result: strings("clientIds"),
  },
  getUidsByGroup: {
    action: "get uids of group",
    route: "everyone",
    rpc: "getUidsByGroup",
    args: [group],
    result: strings("uids"),
  },
  getUidCountByGroup: {
    action: "count uids of group",
    route: "everyone",
    rpc: "getUidCountByGroup",
    args: [group],
    result: count,
  },
  getAllUids: {
    action: "get all uids",
    route: "everyone",
    rpc: "getAllUids",
    args: [],
    result: strings("uids"),
  },
  getAllUid: {
    action: "get all uids",
    route: "everyone",
    rpc: "getAllUids",
    args: [],
    result: strings("uids"),
    aliasOf: "getAllUids",
  },
  getAllUidCount: {
    action: "count all uids",
    route: "everyone",
    rpc: "getAllUidCount",
    args: [],
    result: count,
  },
  getAllGroups: {
    action: "get all groups",
    route: "everyone",
    rpc: "getAllGroups",
    args: [],
    result: strings("groups"),
  },
  getAllClientIds: {
    action: "get all clients",
    route: "everyone",
    rpc: "getAllClientIds",
    args: [],
    result: strings("clientIds"),
  },
  getAllClientCount: {
    action: "count all clients",
    route: "everyone",
    rpc: "getAllClientCount",
    args: [],
    result: count,
  },
  isOnline: {
    action: "check client",
    route: "owner",
    rpc: "isOnline",
    args: [clientId],
    result: flag("online"),
  },
  closeClient: {
    action: "close client",
    route: "delivery",
    rpc: "closeClient",
    args: [clientId, optionalMessage("lastMessage")],
    result: none,
  },
  getInfo: {
    action: "get info",
    route: "owner",
    rpc: "getInfo",
    args: [clientId],
    result: optionalInfo,
  },
  setInfo: {
    action: "set info",
    route: "owner",
    rpc: "setInfo",
    args: [clientId, info],
    result: none,
  },
  updateInfo: {
    action: "update info",
    route: "owner",
    rpc: "updateInfo",
    args: [clientId, info],
    result: none,
  },
  getClientInfosByGroup: {
    action: "get infos of group",
    route: "everyone",
    rpc: "getClientInfosByGroup",
    args: [group],
    result: infos,
  },
  getAllClientInfos: {
    action: "get all infos",
    route: "everyone",
    rpc: "getAllClientInfos",
    args: [],
    result: infos,
  },
};

/** Every Api method, in the table's order (the metrics' order). */
export const METHOD_NAMES: readonly ApiMethod[] = Object.keys(
  METHODS,
) as ApiMethod[];

/** Whether `name` is the name of an Api method. */
export function isApiMethod(name: string): name is ApiMethod {
  return Object.hasOwn(METHODS, name);
}

/** The most parameters an Api method has. */
export const MAX_ARGS = 3;

/**
 * A generic Api method, for code that is the same for every method (the
 * wrappers and handlers derived from the table). It takes up to
 * {@linkcode MAX_ARGS} arguments, positionally, without a rest parameter:
 * the hot paths make no array per call.
 */
export type AnyMethod = (
  a?: unknown,
  b?: unknown,
  c?: unknown,
) => Promise<unknown>;

/** The argument codecs of `name`, for code that is the same for every method. */
export function argCodecsOf(name: ApiMethod): readonly ArgCodec<unknown>[] {
  return METHODS[name].args as readonly ArgCodec<unknown>[];
}

/** The method `name` of `api`, as an {@linkcode AnyMethod}. */
export function methodOf(api: Api, name: ApiMethod): AnyMethod {
  const method = api[name] as AnyMethod;
  return (a, b, c) => method.call(api, a, b, c);
}
