// The cluster-wide Api of one service: each call is checked, then routed by
// its entry in the method table (internal/api/method_table.ts) and carried
// out by its cluster implementation (cluster_methods.ts). Calls about one
// client go to the service that holds it; calls about everyone ask every
// member in parallel and merge the answers; sends go out as deliveries on
// the peers' ordered links. This service's own share is served from the
// LocalHub, without RPC. Peers are reached through the `Peers` interface
// (peers.ts): over gRPC in a service, in memory in unit tests. With holder
// routing (`holders`), calls and sends about uids and groups reach only the
// peers that hold them (holder_index.ts), and calls that made this service
// a holder resolve once the peers know (holder_announcer.ts).

import type { Api } from "../../api.ts";
import {
  GatewayError,
  IncompleteResultError,
  type PeerFailure,
} from "../../errors.ts";
import type { Limits } from "../api/codecs.ts";
import {
  type AnyMethod,
  type ApiArgs,
  type ApiMethod,
  type ApiResult,
  argCodecsOf,
  METHOD_NAMES,
  METHODS,
} from "../api/method_table.ts";
import { DeliveryEncoder } from "../delivery/codec.ts";
import { nodeIdOf } from "../hub/client_id.ts";
import type { LocalHub } from "../hub/local_hub.ts";
import type { ClientMoves } from "./client_moves.ts";
import { CLUSTER_METHODS, type ClusterMethod } from "./cluster_methods.ts";
import type { HolderKind } from "./holder_index.ts";
import type { Members, Peer, Peers } from "./peers.ts";

/** What the cluster Api works with. */
export interface ClusterApiOptions {
  readonly nodeId: string;
  readonly hub: LocalHub;
  readonly members: Members;
  readonly peers: Peers;
  readonly limits: Limits;
  /**
   * Sessions that moved to another service: sends to their old clientId
   * go to the new one (docs/recovery.md).
   */
  readonly moves?: ClientMoves | undefined;
  /**
   * Holder routing; unset, calls about uids and groups ask every peer.
   *
   * @default {undefined}
   */
  readonly holders?: HolderRouting | undefined;
}

/** What the cluster Api needs of holder routing. */
export interface HolderRouting {
  /** The peer addresses that hold any of `names`, or may. */
  peersFor(kind: HolderKind, names: readonly string[]): readonly string[];
  /**
   * Resolves once the peers know of the gains made so far; undefined when
   * there are none.
   */
  settled(): Promise<void> | undefined;
}

const DONE = Promise.resolve();

/** The owner of a client: this service, a peer, or nobody (offline). */
type Owner = Peer | typeof LOCAL | undefined;
const LOCAL = "local";

/**
 * Checks the arguments of a call as the method's codecs say, into `into`
 * (one name as a list, send options filled in), and returns it.
 */
type ArgumentChecker = (
  a: unknown,
  b: unknown,
  c: unknown,
  into: unknown[],
) => unknown[];

function argumentChecker(method: ApiMethod, limits: Limits): ArgumentChecker {
  const { action } = METHODS[method];
  const codecs = argCodecsOf(method);
  const n = codecs.length;
  return (a, b, c, into) => {
    if (n > 0) into[0] = codecs[0]!.check(a, action, limits);
    if (n > 1) into[1] = codecs[1]!.check(b, action, limits);
    if (n > 2) into[2] = codecs[2]!.check(c, action, limits);
    return into;
  };
}

/** A method's share or encoder, called without types. */
type Untyped<F> = (first: F, a: unknown, b: unknown, c: unknown) => unknown;

/** The share of this service for `args`. */
function localShare(
  method: ClusterMethod<ApiMethod>,
  hub: LocalHub,
  args: readonly unknown[],
): unknown {
  return (method.local as Untyped<LocalHub>)(hub, args[0], args[1], args[2]);
}

/** Makes the {@linkcode Api} of one service. */
export function createClusterApi(options: ClusterApiOptions): Api {
  const { nodeId, hub, members, peers, limits, moves, holders } = options;
  const encoder = new DeliveryEncoder();
  const api = {} as Record<ApiMethod, AnyMethod>;

  function ownerOf(clientId: unknown): Owner {
    const owner = nodeIdOf(clientId);
    if (owner === nodeId) return LOCAL;
    const address = members.addressOf(owner);
    return address === undefined ? undefined : peers.get(address);
  }

  /**
   * Asks every peer in parallel and merges their answers with this
   * service's own. Rejects with an IncompleteResultError carrying the
   * merged partial answer when some peers fail.
   */
  async function gather(
    local: unknown,
    ask: (peer: Peer) => Promise<unknown>,
    merge: (parts: unknown[]) => unknown,
    addresses: readonly string[],
  ): Promise<unknown> {
    const parts = [local];
    if (addresses.length === 0) return merge(parts);
    const results = await Promise.allSettled(
      addresses.map((address) => ask(peers.get(address))),
    );
    for (const result of results) {
      if (result.status === "fulfilled") parts.push(result.value);
    }
    const failures = failuresOf(addresses, results);
    const merged = merge(parts);
    if (failures.length > 0) throw new IncompleteResultError(merged, failures);
    return merged;
  }

  /** Sends one encoded delivery to the peers at `addresses`. */
  async function deliverToPeers(
    delivery: Uint8Array,
    addresses: readonly string[],
  ): Promise<void> {
    if (addresses.length === 1) {
      const address = addresses[0]!;
      return await peers.get(address).deliveries.send(delivery).catch(
        (error) => {
          throw new IncompleteResultError(undefined, [{
            address,
            error: GatewayError.from(error),
          }]);
        },
      );
    }
    const results = await Promise.allSettled(
      addresses.map((address) => peers.get(address).deliveries.send(delivery)),
    );
    const failures = failuresOf(addresses, results);
    if (failures.length > 0) {
      throw new IncompleteResultError(undefined, failures);
    }
  }

  /**
   * The peers that a call about the names in `first` goes to: their
   * holders with holder routing, else every peer.
   */
  function peersOf(
    kind: HolderKind | undefined,
    first: unknown,
  ): readonly string[] {
    if (kind === undefined || holders === undefined) {
      return members.peerAddresses();
    }
    return holders.peersFor(
      kind,
      typeof first === "string" ? [first] : first as readonly string[],
    );
  }

  /** The function that carries out `name`, never throwing: it rejects. */
  function route(name: ApiMethod): AnyMethod {
    const method = CLUSTER_METHODS[name] as ClusterMethod<ApiMethod>;
    const check = argumentChecker(name, limits);
    const call = (peer: Peer, args: unknown[]) =>
      peer.call(name, args as ApiArgs<typeof name>);
    switch (method.kind) {
      case "owned":
        return (a, b, c) => {
          try {
            const checked = check(a, b, c, []);
            const owner = ownerOf(checked[0]);
            if (owner === LOCAL) {
              const result = localShare(method, hub, checked);
              // A bind or join that made this service a holder resolves
              // once the peers know (read-your-writes).
              const known = holders?.settled();
              return known === undefined
                ? Promise.resolve(result)
                : known.then(() => result);
            }
            if (owner === undefined) return Promise.resolve(method.offline);
            return call(owner, checked);
          } catch (error) {
            return Promise.reject(error);
          }
        };
      case "gathered":
        return (a, b, c) => {
          try {
            const checked = check(a, b, c, []);
            const local = localShare(method, hub, checked);
            if (method.enough?.(local as never)) return Promise.resolve(local);
            return gather(
              local,
              (peer) => call(peer, checked),
              method.merge as (parts: unknown[]) => unknown,
              peersOf(method.holders, checked[0]),
            );
          } catch (error) {
            return Promise.reject(error);
          }
        };
      case "derived": {
        const then = method.then as (answer: unknown) => unknown;
        const from = method.from;
        return (a, b, c) => api[from](a, b, c).then(then);
      }
      case "delivered": {
        const encode = method.encode as Untyped<DeliveryEncoder>;
        const skip = method.skip as
          | ((a: unknown, b: unknown, c: unknown) => boolean)
          | undefined;
        // Sends use their checked arguments before they return (the
        // encoded delivery is copied at once): one array serves every call.
        const checked: unknown[] = [];
        const encoded = () =>
          encode(encoder, checked[0], checked[1], checked[2]) as Uint8Array;
        if (method.to === "owner") {
          return (a, b, c) => {
            try {
              check(a, b, c, checked);
              if (moves !== undefined && moves.size > 0) {
                checked[0] = moves.resolve(checked[0] as string);
              }
              const owner = ownerOf(checked[0]);
              if (owner === LOCAL) {
                localShare(method, hub, checked);
                return DONE;
              }
              if (owner === undefined) return DONE;
              return owner.deliveries.send(encoded());
            } catch (error) {
              return Promise.reject(error);
            }
          };
        }
        const kind = method.holders;
        return (a, b, c) => {
          try {
            check(a, b, c, checked);
            if (skip?.(checked[0], checked[1], checked[2])) {
              return DONE;
            }
            localShare(method, hub, checked);
            const addresses = peersOf(kind, checked[0]);
            if (addresses.length === 0) return DONE;
            return deliverToPeers(encoded(), addresses);
          } catch (error) {
            return Promise.reject(error);
          }
        };
      }
    }
  }

  for (const name of METHOD_NAMES) api[name] = route(name);
  return api as unknown as Api;
}

function failuresOf(
  addresses: readonly string[],
  results: PromiseSettledResult<unknown>[],
): PeerFailure[] {
  const failures: PeerFailure[] = [];
  results.forEach((result, i) => {
    if (result.status === "rejected") {
      failures.push({
        address: addresses[i]!,
        error: GatewayError.from(result.reason),
      });
    }
  });
  return failures;
}

/**
 * What this service answers for its own clients (node scope): its share of
 * `name` with `args`, checked first; for a call about a client of another
 * service, the answer for an offline client. Peers ask for it over gRPC
 * (internal/rpc/) or, in unit tests, in memory.
 *
 * @throws {GatewayError} `invalid_argument` for bad arguments.
 */
export function answerForNode<M extends ApiMethod>(
  hub: LocalHub,
  nodeId: string,
  name: M,
  args: ApiArgs<M>,
  limits: Limits,
): ApiResult<M> {
  const method = CLUSTER_METHODS[name] as ClusterMethod<ApiMethod>;
  const checked = argumentChecker(name, limits)(args[0], args[1], args[2], []);
  const owned = method.kind === "owned" ||
    (method.kind === "delivered" && method.to === "owner");
  if (owned && nodeIdOf(checked[0]) !== nodeId) {
    return (method.kind === "owned" ? method.offline : undefined) as ApiResult<
      M
    >;
  }
  return localShare(method, hub, checked) as ApiResult<M>;
}
