// Who may call an RPC server that has a cluster secret, decided from the
// request headers before any byte of the body is read (rpc_server.ts):
//
// - NodeAuthService.Challenge: anyone; it is how nodes get a nonce.
// - every other method: a node, with `authorization: WsgateNode
//   <nonce>.<proof>` (node_proof.ts), checked by the server's NodeVerifier;
// - `backendPaths` also take `authorization: Bearer <secret>`, for backends
//   that call a service with cluster scope, or ask a register for its
//   members. Such a caller is a "backend": the handlers refuse it what only
//   nodes may ask (node scope; see CALLER).

import { createContextKey } from "npm:@connectrpc/connect@2.2.0";
import { NodeAuthService } from "../../proto/gen/websocket/v1/node_auth_pb.ts";
import { GatewayError } from "../../errors.ts";
import { nodeTokenOf } from "../base/node_proof.ts";
import {
  NodeVerifier,
  type NodeVerifierOptions,
  type ProofRefusal,
} from "../base/node_verifier.ts";
import { authValue, secretMatcher } from "../base/secret.ts";

/** Who made a call that the server let in. */
export type Caller = "node" | "backend";

/**
 * The caller of a call, for handlers (`context.values.get(CALLER)`):
 * `"node"` unless it came in with the bearer secret.
 */
export const CALLER = createContextKey<Caller>("node", {
  description: "who made the call: a node of the cluster, or a backend",
});

/** The HTTP/2 path of NodeAuthService.Challenge. */
export const CHALLENGE_PATH =
  `/${NodeAuthService.typeName}/${NodeAuthService.method.challenge.name}`;

/**
 * The response header of a refusal after which the caller should ask for a
 * new nonce and try once more (its nonce expired, or the node restarted).
 */
export const RENEW_HEADER = "wsgate-auth";
/** The value of {@linkcode RENEW_HEADER}. */
export const RENEW = "renew";

/** Options of {@linkcode createRpcAuth}. */
export interface RpcAuthOptions extends NodeVerifierOptions {
  /** Paths (`/package.Service/Method`) that also take the bearer secret. */
  readonly backendPaths: Iterable<string>;
}

/** How an RPC server with a secret checks its callers. */
export interface RpcAuth {
  /** Checks node proofs; the delivery port beside the server shares it. */
  readonly verifier: NodeVerifier;
  /** Who calls `path` with this `authorization` header, or why not. */
  check(path: string, authorization: string | undefined): Caller | ProofRefusal;
}

/** The checks of a server whose cluster secret is `secret`. */
export function createRpcAuth(
  secret: string,
  options: RpcAuthOptions,
): RpcAuth {
  const verifier = new NodeVerifier(secret, options);
  const backendPaths = new Set(options.backendPaths);
  const isSecret = secretMatcher(authValue(secret));
  return {
    verifier,
    check(path, authorization) {
      if (path === CHALLENGE_PATH) return "node";
      const token = authorization === undefined
        ? undefined
        : nodeTokenOf(authorization);
      if (token !== undefined) return verifier.verify(token) ?? "node";
      const backends = backendPaths.has(path);
      if (authorization === undefined || authorization === "") {
        return refused(
          backends
            ? 'Missing secret: send `Authorization: Bearer <secret>` (a backend), or a node proof (a node; see "Node authentication" in the README)'
            : 'Missing node proof: this method is for nodes of the cluster, which prove the secret without sending it (see "Node authentication" in the README)',
        );
      }
      if (!backends) {
        return refused(
          'Cannot call this method with a bearer token: it is for nodes of the cluster, which prove the secret with a challenge instead (see "Node authentication" in the README)',
        );
      }
      if (isSecret(authorization)) return "backend";
      return refused("Wrong secret");
    },
  };
}

function refused(message: string): ProofRefusal {
  return { error: new GatewayError("unauthenticated", message), renew: false };
}
