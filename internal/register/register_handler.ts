// The RegisterService of a register: Join streams that carry the member
// list, ListMembers, and the members' ReportStats for the dashboard.

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
import { fromStatsMessage } from "../membership/member_stats.ts";
import type { DashboardStats } from "../dashboard/dashboard_stats.ts";

/** Where a register keeps its members' reports, and how often it asks. */
export interface StatsSink {
  readonly stats: DashboardStats;
  /** What MemberList.stats_interval_ms says. */
  readonly intervalMs: number;
}

/**
 * Makes the RegisterService implementation of a register; without `sink`
 * (no dashboard) members are asked for no reports, and any report is
 * dropped.
 */
export function createRegisterHandler(
  registry: MemberRegistry,
  metrics: RegisterMetrics,
  sink?: StatsSink,
): ServiceImpl<typeof RegisterService> {
  const toProto = (list: MemberList) =>
    create(MemberListSchema, {
      registerId: list.registerId,
      version: list.version,
      members: list.members.map((m) => ({ ...m })),
      statsIntervalMs: sink?.intervalMs ?? 0,
    });
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
    reportStats(request) {
      if (request.stats === undefined) {
        throw new GatewayError(
          "invalid_argument",
          "Cannot take the stats report: stats is missing",
        );
      }
      const stats = fromStatsMessage(request.stats);
      if (!registry.has(stats.nodeId)) {
        throw new GatewayError(
          "invalid_argument",
          `Cannot take the stats report of ${stats.nodeId}: it is not a member of this register; join first`,
        );
      }
      sink?.stats.record(stats);
      return {};
    },
  };
}
