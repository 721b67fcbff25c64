// The sizes of a message (a string or bytes), each measured one way: the
// bytes it takes in a frame (UTF-8 for text), a bound on them that costs
// nothing to compute, and its length as the byte counters add it.

import type { Message } from "../../api.ts";
import { utf8Length } from "../base/utf8.ts";

/**
 * Whether a message takes more than `max` bytes in its frame (UTF-8 for
 * text). Cheap for the usual sizes: one comparison, no allocation.
 */
export function isLongerThan(message: Message, max: number): boolean {
  if (typeof message !== "string") return message.byteLength > max;
  const units = message.length;
  if (units * 3 <= max) return false; // at most 3 bytes per UTF-16 unit
  if (units > max) return true; // at least 1 byte per unit
  return utf8Length(message) > max;
}

/** How many bytes a message takes in its frame (UTF-8 for text). */
export function messageBytes(message: Message): number {
  return typeof message === "string" ? utf8Length(message) : message.byteLength;
}

/**
 * The most bytes a message can take in its frame, without reading it: 3
 * per UTF-16 code unit of text.
 */
export function maxMessageBytes(message: Message): number {
  return typeof message === "string" ? 3 * message.length : message.byteLength;
}

/**
 * A message's length as the byte counters of /metrics add it: bytes of
 * binary, UTF-16 code units of text (equal to its bytes for ASCII; the
 * UTF-8 size would need a pass over every message).
 */
export function messageLength(message: Message): number {
  return typeof message === "string" ? message.length : message.byteLength;
}
