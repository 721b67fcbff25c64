// Cluster-unique client ids that name their owning service.
//
// A clientId is `<nodeId>.<seq>`: the 12-character random id of the service
// process (60 bits, fresh at every start, so ids are never reused after a
// restart) and a base-36 counter. Routing a call about one client needs only
// the node part and the member list.

import { GatewayError } from "../../errors.ts";
import { describe } from "../base/describe.ts";

const NODE_ID_LENGTH = 12;
const NODE_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuv";
const NODE_ID_PATTERN = /^[0-9a-v]{12}$/;

/** Makes a fresh random node id. */
export function createNodeId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(NODE_ID_LENGTH));
  let id = "";
  for (const b of bytes) id += NODE_ID_ALPHABET[b & 31];
  return id;
}

/** Whether `value` is a node id as made by {@linkcode createNodeId}. */
export function isNodeId(value: string): boolean {
  return NODE_ID_PATTERN.test(value);
}

/** Hands out the clientIds of one service. */
export class ClientIdAllocator {
  readonly #prefix: string;
  #next = 0;

  constructor(nodeId: string) {
    this.#prefix = `${nodeId}.`;
  }

  /** The next unused clientId. */
  next(): string {
    return this.#prefix + (++this.#next).toString(36);
  }
}

/**
 * Returns the node id that a clientId names.
 *
 * @throws {GatewayError} `invalid_argument` when `clientId` was not made by a
 * {@linkcode ClientIdAllocator}.
 */
export function nodeIdOf(clientId: unknown): string {
  if (typeof clientId !== "string" || !isClientId(clientId)) {
    throw new GatewayError(
      "invalid_argument",
      `Cannot use clientId ${
        describe(clientId)
      }: a clientId is "<12 chars>.<counter>" as handed out by a gateway service`,
    );
  }
  return clientId.slice(0, NODE_ID_LENGTH);
}

/**
 * Whether `value` matches `^[0-9a-v]{12}\.[0-9a-z]{1,11}$`; checked by hand
 * because it runs for every message sent to a client.
 */
function isClientId(value: string): boolean {
  const n = value.length;
  if (n < NODE_ID_LENGTH + 2 || n > NODE_ID_LENGTH + 12) return false;
  for (let i = 0; i < NODE_ID_LENGTH; i++) {
    const c = value.charCodeAt(i);
    // 0-9, a-v
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 118))) return false;
  }
  if (value.charCodeAt(NODE_ID_LENGTH) !== 46) return false; // "."
  for (let i = NODE_ID_LENGTH + 1; i < n; i++) {
    const c = value.charCodeAt(i);
    // 0-9, a-z
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 122))) return false;
  }
  return true;
}
