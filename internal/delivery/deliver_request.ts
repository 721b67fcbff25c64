// Applies one DeliverRequest, a batch from a peer's Deliver stream, to this
// service's clients: first its protobuf `deliveries` (what a stock gRPC
// client sends), then its compact `packed` deliveries (what services send).

import { fromBinary } from "@bufbuild/protobuf";
import {
  type DeliverRequest,
  DeliverRequestSchema,
  type Delivery,
} from "../../proto/gen/websocket/v1/gateway_pb.ts";
import { GatewayError } from "../../errors.ts";
import { applyPacked } from "./codec.ts";
import type { LocalHub } from "../hub/local_hub.ts";
import { fromPayload } from "../api/payload.ts";
import { excludeSet } from "../api/validate.ts";
import { readVarint } from "../grpc/grpc_frame.ts";

/** Applies a decoded DeliverRequest. */
export function applyDeliverRequest(
  hub: LocalHub,
  request: DeliverRequest,
): void {
  for (const delivery of request.deliveries) apply(hub, delivery);
  if (request.packed.length > 0) applyPacked(hub, request.packed);
}

/**
 * Applies an encoded DeliverRequest. One that holds only `packed` (what
 * services send) is applied without decoding it into a message first.
 *
 * @throws {GatewayError} `invalid_argument` when it is malformed.
 */
export function applyDeliverBytes(hub: LocalHub, bytes: Uint8Array): void {
  const packed = onlyPacked(bytes);
  if (packed !== undefined) return applyPacked(hub, packed);
  let request: DeliverRequest;
  try {
    request = fromBinary(DeliverRequestSchema, bytes);
  } catch (error) {
    throw new GatewayError(
      "invalid_argument",
      `Cannot apply a DeliverRequest: it is not valid protobuf (${
        error instanceof Error ? error.message : String(error)
      })`,
    );
  }
  applyDeliverRequest(hub, request);
}

/** DeliverRequest's tag of field 2 (`packed`), length-delimited. */
export const PACKED_TAG = 0x12;

/** The `packed` bytes when they are all `bytes` holds, else undefined. */
function onlyPacked(bytes: Uint8Array): Uint8Array | undefined {
  if (bytes.length === 0) return bytes;
  if (bytes[0] !== PACKED_TAG) return undefined;
  const length = readVarint(bytes, 1);
  return length !== undefined && length.end + length.value === bytes.length
    ? bytes.subarray(length.end)
    : undefined;
}

/** Applies one protobuf delivery. */
function apply(hub: LocalHub, delivery: Delivery): void {
  const target = delivery.target;
  switch (target.case) {
    case "all": {
      const message = fromPayload(target.value.payload);
      if (message !== undefined) {
        hub.sendToAll(
          message,
          excludeSet(target.value.excludeClientIds, "send"),
        );
      }
      return;
    }
    case "client": {
      const message = fromPayload(target.value.payload);
      if (message !== undefined) {
        hub.sendToClient(target.value.clientId, message);
      }
      return;
    }
    case "uids": {
      const message = fromPayload(target.value.payload);
      if (message !== undefined) hub.sendToUids(target.value.uids, message);
      return;
    }
    case "groups": {
      const message = fromPayload(target.value.payload);
      if (message !== undefined) {
        hub.sendToGroups(
          target.value.groups,
          message,
          excludeSet(target.value.excludeClientIds, "send"),
        );
      }
      return;
    }
    case "close":
      hub.close(target.value.clientId, fromPayload(target.value.lastMessage));
      return;
    case undefined:
      return;
    default:
      target satisfies never;
  }
}
