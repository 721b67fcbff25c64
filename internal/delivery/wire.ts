// The delivery wire between services, defined once for both transports and
// for both ends of each.
//
// A batch is a sequence of packed deliveries (the `packed` field of
// DeliverRequest, described in proto/websocket/v1/gateway.proto): each
// delivery is a kind byte and its fields. The batch travels either way:
//
// - on the gRPC Deliver stream: as a DeliverRequest { bytes packed = 2 } in
//   one gRPC message; each DeliverResponse { uint32 batches = 1 } says how
//   many more batches were applied, in order;
// - on the delivery port (a TCP or TLS connection): after a hello, each
//   batch is a u32 length and the packed bytes; the service answers READY
//   once, then ACK u32 n (n more batches applied), or ERROR and closes:
//
//     client → service   "WSGD", version 2, u16 length, a node proof
//                        `nonce.proof` (ASCII, empty without a secret):
//                        the `authorization` token of the gRPC channel to
//                        the same service, from its challenge
//                        (internal/base/node_proof.ts), never the secret
//                        itself; in version 3, then u8 length and the
//                        connection's link id `sender.seq` (ASCII,
//                        link_id.ts); then batches.
//     service → client   READY; ACK u32 n; ERROR u8 gRPC code, u16 length,
//                        UTF-8 message.
//
// Integers of the delivery port are big-endian; varints are protobuf's.

import { GatewayService } from "../../proto/gen/websocket/v1/gateway_pb.ts";
import { GRPC_FRAME_HEADER_BYTES } from "../grpc/grpc_frame.ts";

// ------------------------------------------------------- packed deliveries

/** The kind byte of each packed delivery. */
export const KIND = {
  /** message, strs exclude_client_ids */
  ALL: 1,
  /** str client_id, message */
  CLIENT: 2,
  /** strs uids, message */
  UIDS: 3,
  /** strs groups, message, strs exclude_client_ids */
  GROUPS: 4,
  /** str client_id, message (the last message, may be none) */
  CLOSE: 5,
  /**
   * str origin, str client_id, str new_client_id: a sender's cut in a
   * session takeover (internal/cluster/client_moves.ts); with both ids
   * empty it only names the sender (`origin`, its node id). Sent only to
   * services that take part in a takeover, which know the kind.
   */
  FENCE: 6,
  // Holder announcements (internal/cluster/holder_index.ts): which uids and
  // groups the sender holds members of. Sent only to peers whose Deliver
  // endpoint answered with HOLDINGS_HEADER; each connection of a link
  // starts them with HOLD_RESET.
  /** str node_id, varint epoch: the sender's holdings start over */
  HOLD_RESET: 10,
  /** u8 holding, strs names: the sender now holds members of these */
  HOLD: 11,
  /** u8 holding, strs names: the sender holds no member of these any more */
  RELEASE: 12,
  /** nothing: the snapshot that HOLD_RESET began is complete */
  HOLD_SYNCED: 13,
} as const;

/** The holding byte of HOLD and RELEASE: uids or groups. */
export const HOLDING = { UID: 0, GROUP: 1 } as const;

/** {@linkcode HOLDING.UID} or {@linkcode HOLDING.GROUP}. */
export type Holding = typeof HOLDING[keyof typeof HOLDING];

/** The tag byte before a packed message. */
export const MESSAGE = { NONE: 0, TEXT: 1, BINARY: 2 } as const;

/** The most bytes a varint of a 32-bit length takes. */
export const MAX_VARINT_BYTES = 5;

// ------------------------------------------------------- gRPC Deliver stream

/** The HTTP/2 path of GatewayService.Deliver. */
export const DELIVER_PATH =
  `/${GatewayService.typeName}/${GatewayService.method.deliver.name}`;

/** DeliverRequest's tag of field 2 (`packed`), length-delimited. */
export const PACKED_TAG = 0x12;

/** DeliverResponse's tag of field 1 (`batches`), a varint. */
export const BATCHES_TAG = 0x08;

/**
 * The response header with which a service's Deliver endpoint tells a
 * peer that it has a delivery port, and which.
 */
export const DELIVERY_PORT_HEADER = "wsgate-delivery-port";

/**
 * The request header of a Deliver call that names the connection:
 * `sender.seq` (link_id.ts). A receiver applies one sender's batches from
 * its newest connection only (newest_connections.ts); a call without it
 * is not checked against others.
 */
export const LINK_HEADER = "wsgate-link";

/**
 * The response header (value `1`) with which a service's Deliver endpoint
 * tells a peer that it applies holder announcements (KIND.HOLD_RESET and
 * after); a peer without it is sent none.
 */
export const HOLDINGS_HEADER = "wsgate-holdings";

// ------------------------------------------------------- delivery port

/** The first bytes a delivery port client sends. */
export const MAGIC: Uint8Array = new Uint8Array([0x57, 0x53, 0x47, 0x44]); // "WSGD"
/**
 * The version of the delivery port protocol after {@linkcode MAGIC}: 2
 * since the hello carries a node proof instead of the secret.
 */
export const VERSION = 2;
/**
 * The version of a hello that names its connection after the node proof
 * (a link id, link_id.ts); a delivery port takes both.
 */
export const LINK_VERSION = 3;
/** Magic, version and the node proof's length. */
export const HELLO_HEADER_BYTES: number = MAGIC.length + 1 + 2;
/** Bytes before each batch on the delivery port: its length. */
export const BATCH_LENGTH_BYTES = 4;
/** What the delivery port sends. */
export const PORT_MESSAGE = { READY: 1, ACK: 2, ERROR: 3 } as const;

// ------------------------------------------------------- both

/**
 * Room that a sender keeps before each batch in its buffer, for the
 * framing of either transport: the gRPC frame header, the `packed` tag and
 * its length, or the delivery port's length.
 */
export const BATCH_HEADROOM: number = Math.max(
  GRPC_FRAME_HEADER_BYTES + 1 + MAX_VARINT_BYTES,
  BATCH_LENGTH_BYTES,
);

/** Bytes of `value` as a varint. */
export function varintSize(value: number): number {
  return value < 0x80
    ? 1
    : value < 0x4000
    ? 2
    : value < 0x200000
    ? 3
    : value < 0x10000000
    ? 4
    : 5;
}

/** Writes `value` as a varint at `at`; returns where it ends. */
export function writeVarint(
  into: Uint8Array,
  at: number,
  value: number,
): number {
  while (value > 0x7f) {
    into[at++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  into[at++] = value;
  return at;
}

/**
 * The varint at `at` and where it ends; undefined when the bytes end first
 * or it is longer than {@linkcode MAX_VARINT_BYTES}.
 */
export function readVarint(
  from: Uint8Array,
  at: number,
): { value: number; end: number } | undefined {
  let value = 0;
  for (let shift = 0; shift < 7 * MAX_VARINT_BYTES; shift += 7) {
    const b = from[at++];
    if (b === undefined) return undefined;
    value += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return { value, end: at };
  }
  return undefined;
}

/** Writes a big-endian u32 at `at`. */
export function writeU32(into: Uint8Array, at: number, value: number): void {
  into[at] = value >>> 24;
  into[at + 1] = (value >>> 16) & 0xff;
  into[at + 2] = (value >>> 8) & 0xff;
  into[at + 3] = value & 0xff;
}

/** Reads a big-endian u32 at `at`. */
export function readU32(from: Uint8Array, at: number): number {
  return from[at]! * 0x1000000 +
    (from[at + 1]! << 16 | from[at + 2]! << 8 | from[at + 3]!);
}
