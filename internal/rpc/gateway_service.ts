// The GatewayService of one service: each Api RPC goes to the peer handler
// (node scope, for nodes only) or the backend handler (cluster scope, the
// default), and Deliver streams that Connect decoded go to the delivery
// module.

import type {
  HandlerContext,
  ServiceImpl,
} from "npm:@connectrpc/connect@2.2.0";
import {
  type DeliverRequest,
  GatewayService,
  Scope,
} from "../../proto/gen/websocket/v1/gateway_pb.ts";
import { GatewayError } from "../../errors.ts";
import type { Fields } from "../api/codecs.ts";
import type { RpcMethod } from "../api/method_table.ts";
import type { DeliveryTarget } from "../delivery/codec.ts";
import { serveDeliverStream } from "../delivery/grpc_endpoint.ts";
import type { ReceiverOptions } from "../delivery/receiver.ts";
import { toConnectError } from "../grpc/grpc_status.ts";
import { CALLER } from "../grpc/rpc_auth.ts";
import type { SessionCalls } from "../cluster/peers.ts";
import type { RpcHandlers } from "./handlers.ts";
import { sessionHandlers } from "./session_rpc.ts";

/** Methods that only peers call: Deliver and the session takeover. */
const NODE_ONLY_METHODS: ReadonlySet<unknown> = new Set([
  GatewayService.method.deliver,
  GatewayService.method.takeOverSession,
  GatewayService.method.fenceSession,
  GatewayService.method.handOverSession,
]);

/**
 * The paths that backends may call with the bearer secret: every method
 * but Deliver and the session takeover, which only peers send (and node
 * scope, refused below).
 */
export const BACKEND_PATHS: readonly string[] = GatewayService.methods
  .filter((method) => !NODE_ONLY_METHODS.has(method))
  .map((method) => `/${GatewayService.typeName}/${method.name}`);

/** What the service is made of. */
export interface GatewayServiceParts {
  /** Node scope: what peers ask. */
  readonly peers: RpcHandlers;
  /** Cluster scope: what backends ask. */
  readonly backends: RpcHandlers;
  /** Where Deliver batches are applied. */
  readonly target: DeliveryTarget;
  /**
   * What answers the session takeover RPCs; without it they answer
   * `unimplemented`.
   */
  readonly sessions?: SessionCalls | undefined;
  /** What is counted of them. */
  readonly receiving?: ReceiverOptions | undefined;
}

/** Makes the GatewayService implementation of one service. */
export function createGatewayService(
  parts: GatewayServiceParts,
): ServiceImpl<typeof GatewayService> {
  const { peers, backends, target, sessions, receiving } = parts;
  const impl: Record<string, unknown> = {
    deliver: (requests: AsyncIterable<DeliverRequest>) =>
      mapErrors(serveDeliverStream(target, requests, receiving)),
    ...(sessions === undefined ? {} : sessionHandlers(sessions)),
  };
  for (const rpc of Object.keys(peers) as RpcMethod[]) {
    const peer = peers[rpc];
    const backend = backends[rpc];
    impl[rpc] = (request: Fields, context: HandlerContext) => {
      if (!isNode(request.scope as Scope)) return backend(request);
      if (context.values.get(CALLER) === "backend") {
        throw new GatewayError(
          "unauthenticated",
          "Cannot call with scope SCOPE_NODE as a backend: node scope is for the services of the cluster, which prove the secret with a node proof; call with cluster scope",
        );
      }
      return peer(request);
    };
  }
  return impl as unknown as ServiceImpl<typeof GatewayService>;
}

/**
 * Whether a request is limited to this service's clients. An unset scope
 * means the cluster; a value the proto does not define is refused.
 */
function isNode(scope: Scope): boolean {
  switch (scope) {
    case Scope.NODE:
      return true;
    case Scope.CLUSTER:
    case Scope.UNSPECIFIED:
      return false;
    default:
      throw new GatewayError(
        "invalid_argument",
        `Cannot use scope ${scope}: expected SCOPE_UNSPECIFIED (0), SCOPE_CLUSTER (1) or SCOPE_NODE (2)`,
      );
  }
}

/** A stream's failure as a gRPC status. */
async function* mapErrors<T>(messages: AsyncIterable<T>): AsyncGenerator<T> {
  try {
    yield* messages;
  } catch (error) {
    throw toConnectError(error);
  }
}
