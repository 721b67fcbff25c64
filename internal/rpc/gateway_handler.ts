// The GatewayService implementation: what this service answers over gRPC.
// Node-scope calls (from peers) touch only the LocalHub; cluster-scope calls
// (from backends) run through the cluster Api, exactly as business code's
// calls do.

import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Api, ClientInfo, Message } from "../../api.ts";
import {
  type ClientInfo as ProtoClientInfo,
  type DeliverRequest,
  type DeliverResponseSchema,
  type GatewayService,
  type Payload,
  Scope,
} from "../../proto/gen/websocket/v1/gateway_pb.ts";
import { GatewayError } from "../../errors.ts";
import { nodeIdOf } from "../hub/client_id.ts";
import type { LocalHub } from "../hub/local_hub.ts";
import { fromPayload } from "../api/payload.ts";
import { applyDeliverRequest } from "../delivery/deliver_request.ts";
import { toConnectError } from "../grpc/grpc_status.ts";
import {
  checkGroup,
  checkInfo,
  checkNames,
  checkUid,
  excludeSet,
} from "../api/validate.ts";

/** Makes the GatewayService implementation of one service. */
export function createGatewayHandler(
  nodeId: string,
  hub: LocalHub,
  api: Api,
): ServiceImpl<typeof GatewayService> {
  /** Whether a node-scope call is about a client of this service. */
  function own(clientId: string): boolean {
    return nodeIdOf(clientId) === nodeId;
  }
  return {
    // ----------------------------------------------------------- sending
    async sendToAll(req) {
      const message = required(req.payload, "send to all");
      if (!isNode(req.scope)) {
        await api.sendToAll(message, { exclude: req.excludeClientIds });
      } else {
        hub.sendToAll(message, excludeSet(req.excludeClientIds, "send"));
      }
      return {};
    },
    async sendToClient(req) {
      const message = required(req.payload, "send to client");
      if (!isNode(req.scope)) await api.sendToClient(req.clientId, message);
      else if (own(req.clientId)) hub.sendToClient(req.clientId, message);
      return {};
    },
    async sendToUid(req) {
      const message = required(req.payload, "send to uid");
      if (!isNode(req.scope)) await api.sendToUid(req.uids, message);
      else hub.sendToUids(checkNames("uid", req.uids, "send to uid"), message);
      return {};
    },
    async sendToGroup(req) {
      const message = required(req.payload, "send to group");
      if (!isNode(req.scope)) {
        await api.sendToGroup(req.groups, message, {
          exclude: req.excludeClientIds,
        });
      } else {
        hub.sendToGroups(
          checkNames("group", req.groups, "send to group"),
          message,
          excludeSet(req.excludeClientIds, "send"),
        );
      }
      return {};
    },
    deliver(requests) {
      return acknowledge(
        requests,
        (request) => applyDeliverRequest(hub, request),
      );
    },

    // ----------------------------------------------------------- clients
    async isOnline(req) {
      if (!isNode(req.scope)) {
        return { online: await api.isOnline(req.clientId) };
      }
      return { online: own(req.clientId) && hub.has(req.clientId) };
    },
    async closeClient(req) {
      const message = fromPayload(req.lastMessage);
      if (!isNode(req.scope)) await api.closeClient(req.clientId, message);
      else if (own(req.clientId)) hub.close(req.clientId, message);
      return {};
    },
    async getAllClientIds(req) {
      if (!isNode(req.scope)) return { clientIds: await api.getAllClientIds() };
      return { clientIds: [...hub.clientIds()] };
    },
    async getAllClientCount(req) {
      const count = isNode(req.scope)
        ? hub.size
        : await api.getAllClientCount();
      return { count: BigInt(count) };
    },

    // ----------------------------------------------------------- uids
    async bindUid(req) {
      if (!isNode(req.scope)) await api.bindUid(req.clientId, req.uid);
      else if (own(req.clientId)) {
        hub.bindUid(req.clientId, checkUid(req.uid, "bind uid"));
      }
      return {};
    },
    async unbindUid(req) {
      if (!isNode(req.scope)) await api.unbindUid(req.clientId);
      else if (own(req.clientId)) hub.unbindUid(req.clientId);
      return {};
    },
    async isUidOnline(req) {
      if (!isNode(req.scope)) return { online: await api.isUidOnline(req.uid) };
      return { online: hub.hasUid(checkUid(req.uid, "check uid")) };
    },
    async getUidByClientId(req) {
      const uid = !isNode(req.scope)
        ? await api.getUidByClientId(req.clientId)
        : own(req.clientId)
        ? hub.uidOf(req.clientId)
        : undefined;
      return uid === undefined ? {} : { uid };
    },
    async getClientIdsByUid(req) {
      if (!isNode(req.scope)) {
        return { clientIds: await api.getClientIdsByUid(req.uid) };
      }
      const uid = checkUid(req.uid, "get clients by uid");
      return { clientIds: [...hub.clientIdsOfUid(uid)] };
    },
    async getAllUids(req) {
      if (!isNode(req.scope)) return { uids: await api.getAllUid() };
      return { uids: [...hub.uids()] };
    },
    async getAllUidCount(req) {
      const count = isNode(req.scope)
        ? hub.uidCount
        : await api.getAllUidCount();
      return { count: BigInt(count) };
    },

    // ----------------------------------------------------------- groups
    async joinGroup(req) {
      if (!isNode(req.scope)) await api.joinGroup(req.clientId, req.group);
      else if (own(req.clientId)) {
        hub.joinGroup(req.clientId, checkGroup(req.group, "join group"));
      }
      return {};
    },
    async leaveGroup(req) {
      if (!isNode(req.scope)) await api.leaveGroup(req.clientId, req.group);
      else if (own(req.clientId)) {
        hub.leaveGroup(req.clientId, checkGroup(req.group, "leave group"));
      }
      return {};
    },
    async ungroup(req) {
      if (!isNode(req.scope)) await api.ungroup(req.group);
      else hub.ungroup(checkGroup(req.group, "ungroup"));
      return {};
    },
    async getClientCountByGroup(req) {
      const count = isNode(req.scope)
        ? hub.groupSize(checkGroup(req.group, "count clients of group"))
        : await api.getClientCountByGroup(req.group);
      return { count: BigInt(count) };
    },
    async getClientIdsByGroup(req) {
      if (!isNode(req.scope)) {
        return { clientIds: await api.getClientIdsByGroup(req.group) };
      }
      const group = checkGroup(req.group, "get clients of group");
      return { clientIds: [...hub.clientIdsOfGroup(group)] };
    },
    async getUidsByGroup(req) {
      if (!isNode(req.scope)) {
        return { uids: await api.getUidsByGroup(req.group) };
      }
      const group = checkGroup(req.group, "get uids of group");
      return { uids: [...hub.uidsOfGroup(group)] };
    },
    async getUidCountByGroup(req) {
      const count = isNode(req.scope)
        ? hub.uidsOfGroup(checkGroup(req.group, "count uids of group")).size
        : await api.getUidCountByGroup(req.group);
      return { count: BigInt(count) };
    },
    async getAllGroups(req) {
      if (!isNode(req.scope)) return { groups: await api.getAllGroups() };
      return { groups: [...hub.groups()] };
    },

    // ----------------------------------------------------------- info
    async getInfo(req) {
      const info = !isNode(req.scope)
        ? await api.getInfo(req.clientId)
        : own(req.clientId)
        ? hub.getInfo(req.clientId)
        : undefined;
      return info === undefined ? {} : { info: { fields: info } };
    },
    async setInfo(req) {
      if (!isNode(req.scope)) await api.setInfo(req.clientId, req.info);
      else if (own(req.clientId)) {
        hub.setInfo(req.clientId, checkInfo(req.info, "set info"));
      }
      return {};
    },
    async updateInfo(req) {
      if (!isNode(req.scope)) await api.updateInfo(req.clientId, req.info);
      else if (own(req.clientId)) {
        hub.updateInfo(req.clientId, checkInfo(req.info, "update info"));
      }
      return {};
    },
    async getClientInfosByGroup(req) {
      if (!isNode(req.scope)) {
        return {
          infos: toProtoInfos(await api.getClientInfosByGroup(req.group)),
        };
      }
      const group = checkGroup(req.group, "get infos of group");
      return { infos: toProtoInfos(hub.infos(hub.clientIdsOfGroup(group))) };
    },
    async getAllClientInfos(req) {
      const infos = isNode(req.scope)
        ? hub.infos()
        : await api.getAllClientInfos();
      return { infos: toProtoInfos(infos) };
    },
  };
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

function required(payload: Payload | undefined, action: string): Message {
  const message = fromPayload(payload);
  if (message === undefined) {
    throw new GatewayError(
      "invalid_argument",
      `Cannot ${action}: payload is missing; set payload.text or payload.binary`,
    );
  }
  return message;
}

function toProtoInfos(
  infos: Record<string, ClientInfo>,
): { [clientId: string]: Pick<ProtoClientInfo, "fields"> } {
  const out: { [clientId: string]: Pick<ProtoClientInfo, "fields"> } = {};
  for (const [clientId, fields] of Object.entries(infos)) {
    out[clientId] = { fields };
  }
  return out;
}

/**
 * Applies each batch of a Deliver stream as it arrives and acknowledges
 * them in order. Batches are read and applied independently of the
 * responses, so acknowledgements coalesce: each response counts every batch
 * applied since the previous one was written.
 */
async function* acknowledge(
  requests: AsyncIterable<DeliverRequest>,
  apply: (request: DeliverRequest) => void,
): AsyncGenerator<MessageInitShape<typeof DeliverResponseSchema>> {
  let applied = 0;
  let ended = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  // Ends with the request stream; it records its failure and never throws.
  (async () => {
    try {
      for await (const request of requests) {
        apply(request);
        applied++;
        if (wake !== undefined) {
          const w = wake;
          wake = undefined;
          w();
        }
      }
    } catch (error) {
      failure = error;
    } finally {
      ended = true;
      wake?.();
    }
  })();
  for (;;) {
    if (applied > 0) {
      const batches = applied;
      applied = 0;
      yield { batches };
    } else if (ended) {
      // Stream errors pass the error-mapping interceptor by: map them here.
      if (failure !== undefined) throw toConnectError(failure);
      return;
    } else {
      await new Promise<void>((resolve) => wake = resolve);
    }
  }
}
