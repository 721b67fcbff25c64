// What a service answers backends (requests with cluster scope, the
// default): the call carried out for the whole cluster, through the same
// Api that business code uses.

import type { Api } from "../../api.ts";
import { methodOf } from "../api/method_table.ts";
import { handlersOf, type RpcHandlers } from "./handlers.ts";

/** The cluster-scope handlers of one service. */
export function createBackendHandlers(api: Api): RpcHandlers {
  return handlersOf((method, args) => methodOf(api, method)(...args));
}
