// The size of a client's info map as its bounds count it, and the check of
// a map against them: how many keys it has, and how many bytes its keys
// and values take in UTF-8 (what it adds to an answer with the infos of
// many clients, give or take a few bytes of framing per key).

import type { ClientInfo } from "../../api.ts";
import { GatewayError } from "../../errors.ts";
import { utf8Length } from "../base/utf8.ts";

/** How large the info map of one client may be. */
export interface InfoBounds {
  /** Keys, at most. */
  readonly maxInfoKeys: number;
  /** UTF-8 bytes of its keys and values together, at most. */
  readonly maxInfoBytes: number;
}

/** The size of an info map. */
export interface InfoSize {
  readonly keys: number;
  /** UTF-8 bytes of its keys and values together. */
  readonly bytes: number;
}

/** No bounds at all. */
export const UNBOUNDED: InfoBounds = {
  maxInfoKeys: Infinity,
  maxInfoBytes: Infinity,
};

/** The UTF-8 bytes of one key and its value. */
export function entryBytes(key: string, value: string): number {
  return utf8Length(key) + utf8Length(value);
}

/** The size of `info`. */
export function infoSize(info: ClientInfo): InfoSize {
  let keys = 0;
  let bytes = 0;
  for (const key in info) {
    if (!Object.hasOwn(info, key)) continue;
    keys++;
    bytes += entryBytes(key, info[key]!);
  }
  return { keys, bytes };
}

/**
 * Throws a GatewayError `invalid_argument` when an info map of `size`
 * would go past `bounds`. Its message starts with `Cannot ${action}: `,
 * then `${subject} has` (or `would have`, with `now`, the size of the map
 * it would replace), the size, the bound and the option that sets it.
 */
export function checkInfoSize(
  action: string,
  subject: string,
  size: InfoSize,
  bounds: InfoBounds,
  now?: InfoSize,
): void {
  const has = now === undefined ? "has" : "would have";
  if (size.keys > bounds.maxInfoKeys) {
    throw new GatewayError(
      "invalid_argument",
      `Cannot ${action}: ${subject} ${has} ${size.keys} keys, more than the limit of ${bounds.maxInfoKeys} (maxInfoKeys)${
        now === undefined ? "" : `; it has ${now.keys} now`
      }`,
    );
  }
  if (size.bytes > bounds.maxInfoBytes) {
    throw new GatewayError(
      "invalid_argument",
      `Cannot ${action}: ${subject} ${has} ${size.bytes} bytes of keys and values, more than the limit of ${bounds.maxInfoBytes} (maxInfoBytes)${
        now === undefined ? "" : `; it has ${now.bytes} now`
      }`,
    );
  }
}
