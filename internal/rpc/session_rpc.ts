// The calls of a session takeover (docs/recovery.md) over gRPC, both ends:
// what a service asks a peer (TakeOverSession, FenceSession and
// HandOverSession of gateway.proto, unary, with the peer's node proof),
// and the handlers that answer them from the service's SessionCalls.

import type {
  DescMethodUnary,
  MessageInitShape,
} from "npm:@bufbuild/protobuf@2.17.0";
import {
  type FenceSessionRequest,
  GatewayService,
  type HandOverSessionRequest,
  type HandOverSessionResponseSchema,
  type TakeOverSessionRequest,
  type TakeOverSessionResponseSchema,
} from "../../proto/gen/websocket/v1/gateway_pb.ts";
import type { ClientInfo, Message } from "../../api.ts";
import { GatewayError } from "../../errors.ts";
import { fromPayload, toPayload } from "../api/payload.ts";
import { nodeIdOf } from "../hub/client_id.ts";
import type {
  HandOverAnswer,
  SessionCalls,
  TakeOverAnswer,
} from "../cluster/peers.ts";
import type { RpcChannel } from "../grpc/rpc_channel.ts";
import { fromRpcError } from "../grpc/grpc_status.ts";

/** The longest token a TakeOverSession request may carry. */
const MAX_TOKEN_LENGTH = 128;

type TakeOverResponse = MessageInitShape<typeof TakeOverSessionResponseSchema>;
type HandOverResponse = MessageInitShape<typeof HandOverSessionResponseSchema>;

/** The session calls to the peer at `address`, over `channel`. */
export function sessionCallsTo(
  channel: RpcChannel,
  address: string,
  deadlineMs: number,
): SessionCalls {
  const unary = async (
    method: DescMethodUnary,
    request: Record<string, unknown>,
  ): Promise<Record<string, unknown>> => {
    try {
      const response = await channel.transport.unary(
        method,
        undefined,
        deadlineMs,
        undefined,
        request as never,
      );
      return response.message as Record<string, unknown>;
    } catch (error) {
      throw fromRpcError(error, address);
    }
  };
  return {
    async takeOver({ token, seq, newClientId }) {
      const r = await unary(GatewayService.method.takeOverSession, {
        token,
        seq: BigInt(seq),
        newClientId,
      });
      if (r.recovered !== true) return { recovered: false };
      const info = (r.info as { fields?: ClientInfo } | undefined)?.fields;
      return {
        recovered: true,
        clientId: String(r.clientId),
        uid: r.uid as string | undefined,
        groups: r.groups as string[],
        info: { ...info },
      };
    },
    async fence(clientId, newClientId) {
      await unary(GatewayService.method.fenceSession, {
        clientId,
        newClientId,
      });
    },
    async handOver(clientId, newClientId) {
      const r = await unary(GatewayService.method.handOverSession, {
        clientId,
        newClientId,
      });
      if (r.recovered !== true) return { recovered: false };
      const frames = (r.frames as Parameters<typeof fromPayload>[0][]).map(
        (payload) => fromPayload(payload) ?? "",
      );
      return { recovered: true, firstSeq: Number(r.firstSeq), frames };
    },
    async received(clientId, newClientId) {
      await unary(GatewayService.method.handOverSession, {
        clientId,
        newClientId,
        received: true,
      });
    },
  };
}

/**
 * The GatewayService handlers of the three session RPCs, answered by
 * `calls` (this service's session store).
 */
export function sessionHandlers(calls: SessionCalls): {
  takeOverSession(request: TakeOverSessionRequest): Promise<TakeOverResponse>;
  fenceSession(request: FenceSessionRequest): Promise<object>;
  handOverSession(request: HandOverSessionRequest): Promise<HandOverResponse>;
} {
  return {
    async takeOverSession(request) {
      const { token, seq, newClientId } = request;
      if (token.length > MAX_TOKEN_LENGTH) {
        throw invalid(`a token of at most ${MAX_TOKEN_LENGTH} characters`);
      }
      if (seq > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw invalid("a seq of at most 2^53 - 1");
      }
      nodeIdOf(newClientId);
      return takeOverResponse(
        await calls.takeOver({ token, seq: Number(seq), newClientId }),
      );
    },
    async fenceSession({ clientId, newClientId }) {
      nodeIdOf(clientId);
      nodeIdOf(newClientId);
      await calls.fence(clientId, newClientId);
      return {};
    },
    async handOverSession({ clientId, newClientId, received }) {
      nodeIdOf(clientId);
      nodeIdOf(newClientId);
      if (received) {
        await calls.received(clientId, newClientId);
        return {};
      }
      return handOverResponse(await calls.handOver(clientId, newClientId));
    },
  };
}

function takeOverResponse(answer: TakeOverAnswer): TakeOverResponse {
  if (!answer.recovered) return { recovered: false };
  return {
    recovered: true,
    clientId: answer.clientId,
    ...(answer.uid === undefined ? {} : { uid: answer.uid }),
    groups: [...answer.groups],
    info: { fields: { ...answer.info } },
  };
}

function handOverResponse(answer: HandOverAnswer): HandOverResponse {
  if (!answer.recovered) return { recovered: false };
  return {
    recovered: true,
    firstSeq: BigInt(answer.firstSeq),
    frames: answer.frames.map((frame: Message) => toPayload(frame)),
  };
}

function invalid(expected: string): GatewayError {
  return new GatewayError(
    "invalid_argument",
    `Cannot take over a session: expected ${expected}`,
  );
}
