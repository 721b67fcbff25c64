// WebSocket messages on the wire between services.

import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Message } from "../api.ts";
import type {
  Payload,
  PayloadSchema,
} from "../proto/gen/websocket/v1/gateway_pb.ts";

/** The protobuf form of a message. */
export function toPayload(message: Message): MessageInitShape<
  typeof PayloadSchema
> {
  return typeof message === "string"
    ? { body: { case: "text", value: message } }
    : { body: { case: "binary", value: message } };
}

/** The message a payload carries, or undefined when it carries none. */
export function fromPayload(payload: Payload | undefined): Message | undefined {
  return payload?.body.value;
}

/** Roughly how many bytes a message takes, for queue limits. */
export function messageBytes(message: Message): number {
  return typeof message === "string" ? message.length * 2 : message.byteLength;
}
