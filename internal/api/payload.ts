// A message on the gRPC wire: the `Payload` of gateway.proto, a text or a
// binary body.

import type { Message } from "../../api.ts";
import type { Payload } from "../../proto/gen/websocket/v1/gateway_pb.ts";

/** The shape of a Payload for a request or response being built. */
export type PayloadInit = Pick<Payload, "body">;

/** The message a payload carries, or undefined when it carries none. */
export function fromPayload(payload: Payload | undefined): Message | undefined {
  return payload?.body.value;
}

/** The payload that carries `message`. */
export function toPayload(message: Message): PayloadInit {
  return typeof message === "string"
    ? { body: { case: "text", value: message } }
    : { body: { case: "binary", value: message } };
}
