// Which connection of which sending service a delivery connection is: a
// sender id, random per sending service (per PeerPool, so per process
// start and never shared by two services in one process), and a sequence
// number that grows with every connection the service opens to any peer.
// The sender names it at the start of each connection (LINK_HEADER on the
// gRPC Deliver call, the version 3 hello on the delivery port), and the
// receiver applies batches of one sender from its newest connection only
// (newest_connections.ts).
//
// The sender id is random rather than the node id, which every member
// list shows: a node cannot make a receiver drop another node's
// connections without knowing that node's id, which only receivers see.

import { GatewayError } from "../../errors.ts";

/** A connection of a sending service. */
export interface LinkId {
  /** The sending service's random id: 1 to 64 of `A-Z a-z 0-9 _ -`. */
  readonly sender: string;
  /** Grows with each connection the sender opens, from 1. */
  readonly seq: number;
}

const SENDER_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const SEQ_PATTERN = /^[1-9][0-9]{0,15}$/;
const SENDER_ID_BYTES = 12;

/**
 * Makes the ids of one sending service's connections.
 *
 * @example
 * ```ts
 * const ids = new LinkIds();
 * const first = ids.next();
 * const second = ids.next(); // same sender, second.seq > first.seq
 * ```
 */
export class LinkIds {
  /** This service's random sender id. */
  readonly sender: string;
  #seq = 0;

  constructor() {
    const bytes = crypto.getRandomValues(new Uint8Array(SENDER_ID_BYTES));
    this.sender = btoa(String.fromCharCode(...bytes))
      .replaceAll("+", "-").replaceAll("/", "_");
  }

  /** The id of the next connection. */
  next(): LinkId {
    return { sender: this.sender, seq: ++this.#seq };
  }
}

/** `sender.seq`, as LINK_HEADER and the hello carry it. */
export function formatLinkId(link: LinkId): string {
  return `${link.sender}.${link.seq}`;
}

/**
 * Reads `sender.seq`.
 *
 * @throws {GatewayError} `invalid_argument` when it is not one.
 */
export function parseLinkId(text: string): LinkId {
  const dot = text.lastIndexOf(".");
  const sender = text.slice(0, dot);
  const seq = text.slice(dot + 1);
  if (dot < 0 || !SENDER_PATTERN.test(sender) || !SEQ_PATTERN.test(seq)) {
    throw new GatewayError(
      "invalid_argument",
      `Malformed delivery link id ${
        JSON.stringify(text.slice(0, 100))
      }: expected "<sender>.<seq>", a sender id of 1 to 64 letters, digits, _ or -, and a sequence number from 1`,
    );
  }
  return { sender, seq: Number(seq) };
}
