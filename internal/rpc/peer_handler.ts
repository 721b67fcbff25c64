// What a service answers its peers (requests with node scope): its share
// of each Api method, about its own clients only, without asking anyone.

import type { Limits } from "../api/codecs.ts";
import type { ApiArgs, ApiMethod } from "../api/method_table.ts";
import { answerForNode } from "../cluster/cluster_api.ts";
import type { LocalHub } from "../hub/local_hub.ts";
import { handlersOf, type RpcHandlers } from "./handlers.ts";

/** The node-scope handlers of one service. */
export function createPeerHandlers(
  hub: LocalHub,
  nodeId: string,
  limits: Limits,
): RpcHandlers {
  return handlersOf((method, args) =>
    answerForNode(hub, nodeId, method, args as ApiArgs<ApiMethod>, limits)
  );
}
