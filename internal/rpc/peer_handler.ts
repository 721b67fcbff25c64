// What a service answers its peers (requests with node scope): its share
// of each Api method, about its own clients only, without asking anyone.
// A bind or join that made this service a holder of a uid or group is
// answered once the other peers know (holder routing, read-your-writes).

import type { Limits } from "../api/codecs.ts";
import {
  type ApiArgs,
  type ApiMethod,
  METHOD_NAMES,
} from "../api/method_table.ts";
import { answerForNode } from "../cluster/cluster_api.ts";
import type { LocalHub } from "../hub/local_hub.ts";
import { handlersOf, type RpcHandlers } from "./handlers.ts";

/** Options of {@linkcode createPeerHandlers}. */
export interface PeerHandlerOptions {
  /**
   * Resolves once the peers know of the holdings gained so far; undefined
   * when there are none (holder_announcer.ts).
   */
  readonly settled?: (() => Promise<void> | undefined) | undefined;
  /** Counts the calls answered, by the method table's index. */
  readonly calls?: Float64Array | undefined;
}

/** The node-scope handlers of one service. */
export function createPeerHandlers(
  hub: LocalHub,
  nodeId: string,
  limits: Limits,
  options: PeerHandlerOptions = {},
): RpcHandlers {
  const { settled, calls } = options;
  const indexOf = new Map(METHOD_NAMES.map((name, i) => [name, i]));
  return handlersOf((method, args) => {
    if (calls !== undefined) calls[indexOf.get(method)!]!++;
    const answer = answerForNode(
      hub,
      nodeId,
      method,
      args as ApiArgs<ApiMethod>,
      limits,
    );
    const known = settled?.();
    return known === undefined ? answer : known.then(() => answer);
  });
}
