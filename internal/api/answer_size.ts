// How large a peer's answer (a call with node scope) may be when it is
// read, worked out from the info bounds.
//
// Why a limit of its own: the limit on requests that a service reads
// protects it from strangers, and is sized by the largest legal request
// (about a message of maxSendBytes). Answers of peers are another matter.
// A query about every client (the infos of all clients, or of a group)
// gets from each peer an answer that grows with that peer's clients, with
// no bound of its own: a peer with 200 clients whose info maps are full
// answers up to about 3.4 MiB, one with 20,000 up to about 340 MiB. Read with the
// request limit, such answers failed the whole query for everyone (a
// resource_exhausted from that peer, so an incomplete answer), and before
// maps had bounds one client with a large map could do that alone.
//
// With maxInfoKeys and maxInfoBytes, one client adds at most
// `maxInfoBytes + 18 × maxInfoKeys + 64` bytes to an answer (below), and
// the limit allows that for ANSWER_CLIENTS clients per peer: 1.1 GiB at the
// defaults, capped at what one gRPC message can be (4 GiB). So what breaks
// a query is never one client, and not the number of clients either until
// the answer is too large for the caller to hold at all (it holds every
// peer's answer at once; ask by group then). The limit is there only so
// that a peer that misbehaves cannot make the caller read without end;
// peers are members the register admitted, with the cluster secret.

import type { InfoBounds } from "../hub/info_size.ts";
import { MAX_NAME_BYTES } from "./validate.ts";

/** Clients of one peer whose full info maps an answer may carry. */
export const ANSWER_CLIENTS = 65_536;

/**
 * Framing of one key and value in the protobuf map of a ClientInfo: the
 * entry's tag and length, and the tag and length of its key and value,
 * each length a varint of at most 5 bytes.
 */
const ENTRY_FRAMING = 18;

/**
 * Framing of one client in a map of infos by clientId: the entry's tag and
 * length, its key (a clientId: a 12-character node id, a dot and at most
 * 11 base-36 digits) with tag and length, and the ClientInfo around the
 * fields; rounded up.
 */
const CLIENT_FRAMING = 64;

/** The largest gRPC message (its length is a 32-bit number). */
const GRPC_MESSAGE_MAX = 0xffffffff;

/**
 * The most bytes one client can add to a peer's answer: its info map when
 * the bounds are large, its uid (a name of up to MAX_NAME_BYTES) when they
 * are tiny.
 */
export function maxClientAnswerBytes(bounds: InfoBounds): number {
  return Math.max(
    bounds.maxInfoBytes + ENTRY_FRAMING * bounds.maxInfoKeys + CLIENT_FRAMING,
    MAX_NAME_BYTES + CLIENT_FRAMING,
  );
}

/**
 * The limit to read a peer's answer with: room for ANSWER_CLIENTS clients
 * with full info maps, and never less than `atLeast`.
 */
export function maxPeerAnswerBytes(
  bounds: InfoBounds,
  atLeast: number,
): number {
  return Math.min(
    GRPC_MESSAGE_MAX,
    Math.max(atLeast, ANSWER_CLIENTS * maxClientAnswerBytes(bounds)),
  );
}
