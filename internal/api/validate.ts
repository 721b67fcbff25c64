// Checks of caller input. Every failure is a GatewayError with code
// "invalid_argument" and a message that says what to fix.

import { GatewayError } from "../../errors.ts";
import type { ClientInfo, Message } from "../../api.ts";
import { describe } from "../base/describe.ts";
import {
  checkInfoSize,
  entryBytes,
  type InfoBounds,
} from "../hub/info_size.ts";
import { isLongerThan, messageBytes } from "./message_size.ts";

/** The longest uid or group name, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 255;

function invalid(action: string, problem: string): GatewayError {
  return new GatewayError("invalid_argument", `Cannot ${action}: ${problem}`);
}

function checkName(kind: string, value: unknown, action: string): string {
  if (
    typeof value !== "string" || value.length === 0 ||
    isLongerThan(value, MAX_NAME_BYTES)
  ) {
    throw invalid(
      action,
      `${kind} ${
        describe(value)
      } is not a non-empty string of at most ${MAX_NAME_BYTES} bytes`,
    );
  }
  return value;
}

/** Returns `uid` if it is a valid uid, else throws. */
export function checkUid(uid: unknown, action: string): string {
  return checkName("uid", uid, action);
}

/** Returns `group` if it is a valid group name, else throws. */
export function checkGroup(group: unknown, action: string): string {
  return checkName("group", group, action);
}

/** Returns the names as an array: one name, or a non-empty list of names. */
export function checkNames(
  kind: "uid" | "group",
  value: unknown,
  action: string,
): string[] {
  if (!Array.isArray(value)) return [checkName(kind, value, action)];
  for (const v of value) checkName(kind, v, action);
  return value as string[];
}

/**
 * Returns `message` if it is a string or bytes of at most `maxBytes` bytes
 * (UTF-8 for a string), else throws.
 */
export function checkMessage(
  message: unknown,
  action: string,
  maxBytes: number,
): Message {
  if (typeof message !== "string" && !(message instanceof Uint8Array)) {
    throw invalid(
      action,
      `message is ${describe(message)}, expected a string or a Uint8Array`,
    );
  }
  if (isLongerThan(message, maxBytes)) {
    throw invalid(
      action,
      `message is ${
        messageBytes(message)
      } bytes, more than the limit of ${maxBytes} (maxSendBytes)`,
    );
  }
  return message;
}

/**
 * Returns `info` if it is a plain object of string values, within `bounds`
 * when given (a map past them cannot be set, nor merged into one), else
 * throws.
 */
export function checkInfo(
  info: unknown,
  action: string,
  bounds?: InfoBounds,
): ClientInfo {
  if (
    typeof info !== "object" || info === null || Array.isArray(info) ||
    info instanceof Uint8Array
  ) {
    throw invalid(
      action,
      `info is ${describe(info)}, expected an object of string values`,
    );
  }
  let keys = 0;
  let bytes = 0;
  for (const [key, value] of Object.entries(info)) {
    if (typeof value !== "string") {
      throw invalid(
        action,
        `info[${JSON.stringify(key)}] is ${describe(value)}, expected a string`,
      );
    }
    keys++;
    if (bounds !== undefined) bytes += entryBytes(key, value);
  }
  if (bounds !== undefined) {
    checkInfoSize(action, "info", { keys, bytes }, bounds);
  }
  return info as ClientInfo;
}

/** Returns the excluded clientIds of send options as a list, else throws. */
export function checkExclude(exclude: unknown, action: string): string[] {
  if (exclude === undefined) return [];
  if (
    !Array.isArray(exclude) || !exclude.every((id) => typeof id === "string")
  ) {
    throw invalid(
      action,
      `options.exclude is ${describe(exclude)}, expected an array of clientIds`,
    );
  }
  return exclude;
}
