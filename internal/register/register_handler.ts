// The RegisterService of a register: Join streams that carry the member
// list, and ListMembers.

import { create } from "npm:@bufbuild/protobuf@2.17.0";
import type { ServiceImpl } from "npm:@connectrpc/connect@2.2.0";
import {
  MemberListSchema,
  type RegisterService,
} from "../../proto/gen/websocket/v1/register_pb.ts";
import { GatewayError } from "../../errors.ts";
import { isNodeId } from "../hub/client_id.ts";
import { describe } from "../base/describe.ts";
import { parseHostPort } from "../base/address.ts";
import type { MemberList, MemberRegistry } from "./member_registry.ts";
import type { RegisterMetrics } from "../ops/metrics.ts";

/** Makes the RegisterService implementation of a register. */
export function createRegisterHandler(
  registry: MemberRegistry,
  metrics: RegisterMetrics,
): ServiceImpl<typeof RegisterService> {
  return {
    async *join(request, context) {
      const member = request.member;
      if (member === undefined || !isNodeId(member.nodeId)) {
        throw new GatewayError(
          "invalid_argument",
          `Cannot join: member.node_id ${
            describe(member?.nodeId)
          } is not a node id made by a gateway service`,
        );
      }
      parseHostPort(member.rpcAddress, "member.rpc_address");
      const joined = { nodeId: member.nodeId, rpcAddress: member.rpcAddress };
      metrics.joins++;
      try {
        for await (const event of registry.join(joined, context.signal)) {
          yield event.kind === "members"
            ? { event: { case: "members", value: toProto(event.list) } }
            : { event: { case: "heartbeat", value: {} } };
        }
      } finally {
        metrics.leaves++;
      }
    },
    listMembers() {
      return { members: toProto(registry.list()) };
    },
  };
}

function toProto(list: MemberList) {
  return create(MemberListSchema, {
    registerId: list.registerId,
    version: list.version,
    members: list.members.map((m) => ({ ...m })),
  });
}
