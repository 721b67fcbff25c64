// How large one unary request to a service's RPC port may be when it is
// read: what the largest legal request needs, plus room for lists.
//
// The largest legal requests are a send of a message of maxSendBytes
// (SendToAll, SendToGroup, CloseClient with a last message) and a SetInfo
// of a full info map; both carry some framing, and sends may carry lists
// (uids, groups, clientIds to exclude) of names of at most MAX_NAME_BYTES.
// LIST_ROOM_BYTES leaves room for about 40,000 clientIds to exclude, or
// 4,000 group names of the longest kind. A larger request is refused with
// RESOURCE_EXHAUSTED before it is read, so that nobody, secret or not, can
// make a service hold more than this for one call; unary requests used to
// share the limit of Deliver batches (4 × maxPeerQueueBytes, 64 MiB at the
// defaults), and about 2 MiB is what they need at the defaults.
//
// Deliver streams are not affected: each batch on them has a limit of its
// own (internal/service/start_service.ts).

import type { Limits } from "./codecs.ts";
import { maxClientAnswerBytes } from "./answer_size.ts";

/** Room for the lists of names that a request may carry besides. */
export const LIST_ROOM_BYTES = 1024 * 1024;

/** The most bytes one unary request may have, with these limits. */
export function maxRequestBytes(limits: Limits): number {
  return Math.max(limits.maxSendBytes, maxClientAnswerBytes(limits)) +
    LIST_ROOM_BYTES;
}
