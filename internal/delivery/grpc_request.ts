// A DeliverRequest of the gRPC Deliver stream as the packed batch the
// receiver applies: what services send holds only `packed`, taken as it
// is; what other gRPC clients may send as protobuf `deliveries` is packed
// first, so that one decoder applies both.

import { messageOf } from "../base/describe.ts";
import { fromBinary } from "npm:@bufbuild/protobuf@2.17.0";
import {
  type DeliverRequest,
  DeliverRequestSchema,
  type Delivery,
} from "../../proto/gen/websocket/v1/gateway_pb.ts";
import { GatewayError } from "../../errors.ts";
import { fromPayload } from "../api/payload.ts";
import { DeliveryEncoder } from "./codec.ts";
import { PACKED_TAG, readVarint } from "./wire.ts";

/**
 * The packed batch of an encoded DeliverRequest.
 *
 * @throws {GatewayError} `invalid_argument` when it is not protobuf.
 */
export function batchOfBytes(bytes: Uint8Array): Uint8Array {
  const packed = onlyPacked(bytes);
  if (packed !== undefined) return packed;
  let request: DeliverRequest;
  try {
    request = fromBinary(DeliverRequestSchema, bytes);
  } catch (error) {
    throw new GatewayError(
      "invalid_argument",
      `Cannot apply a DeliverRequest: it is not valid protobuf (${
        messageOf(error)
      })`,
    );
  }
  return batchOfRequest(request);
}

/**
 * The packed batch of a decoded DeliverRequest: its `deliveries`, then its
 * `packed` deliveries.
 */
export function batchOfRequest(request: DeliverRequest): Uint8Array {
  if (request.deliveries.length === 0) return request.packed;
  const encoder = new DeliveryEncoder();
  const parts: Uint8Array[] = [];
  for (const delivery of request.deliveries) {
    const encoded = pack(encoder, delivery);
    if (encoded !== undefined) parts.push(encoded.slice());
  }
  parts.push(request.packed);
  const batch = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    batch.set(part, at);
    at += part.length;
  }
  return batch;
}

/** The `packed` bytes when they are all `bytes` holds, else undefined. */
function onlyPacked(bytes: Uint8Array): Uint8Array | undefined {
  if (bytes.length === 0) return bytes;
  if (bytes[0] !== PACKED_TAG) return undefined;
  const length = readVarint(bytes, 1);
  return length !== undefined && length.end + length.value === bytes.length
    ? bytes.subarray(length.end)
    : undefined;
}

/** One protobuf delivery, packed; undefined when it sends nothing. */
function pack(
  encoder: DeliveryEncoder,
  delivery: Delivery,
): Uint8Array | undefined {
  const target = delivery.target;
  switch (target.case) {
    case "all": {
      const message = fromPayload(target.value.payload);
      return message === undefined
        ? undefined
        : encoder.toAll(message, target.value.excludeClientIds);
    }
    case "client": {
      const message = fromPayload(target.value.payload);
      return message === undefined
        ? undefined
        : encoder.toClient(target.value.clientId, message);
    }
    case "uids": {
      const message = fromPayload(target.value.payload);
      return message === undefined
        ? undefined
        : encoder.toUids(target.value.uids, message);
    }
    case "groups": {
      const message = fromPayload(target.value.payload);
      return message === undefined ? undefined : encoder.toGroups(
        target.value.groups,
        message,
        target.value.excludeClientIds,
      );
    }
    case "close":
      return encoder.close(
        target.value.clientId,
        fromPayload(target.value.lastMessage),
      );
    case undefined:
      return undefined;
    default:
      target satisfies never;
      return undefined;
  }
}
