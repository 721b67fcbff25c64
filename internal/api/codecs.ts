// How each kind of Api argument and result is checked and carried: in the
// JSON body of the HTTP API, and in the fields of the gRPC request and
// response messages of gateway.proto. The method table (method_table.ts)
// is written in these.

import type { ClientInfo, Message, SendOptions } from "../../api.ts";
import { GatewayError } from "../../errors.ts";
import type { ClientInfo as ProtoClientInfo } from "../../proto/gen/websocket/v1/gateway_pb.ts";
import { nodeIdOf } from "../hub/client_id.ts";
import type { InfoBounds } from "../hub/info_size.ts";
import { fromPayload, toPayload } from "./payload.ts";
import {
  checkExclude,
  checkGroup,
  checkInfo,
  checkMessage,
  checkNames,
  checkUid,
} from "./validate.ts";

/** Fields of a protobuf message, by their protobuf-es (lowerCamel) names. */
export type Fields = Record<string, unknown>;

/** The JSON object of an HTTP API request. */
export type JsonObject = Record<string, unknown>;

/**
 * The limits that checks of arguments apply: the size of a message, and
 * of an info map (one past them can neither be set nor merged into one).
 */
export interface Limits extends InfoBounds {
  /** The largest message the Api sends, in bytes. */
  readonly maxSendBytes: number;
}

/** The kinds of arguments, as the conformance test tells them apart. */
export type ArgKind =
  | "clientId"
  | "uid"
  | "group"
  | "names"
  | "message"
  | "optionalMessage"
  | "sendOptions"
  | "info";

/** One argument of an Api method. */
export interface ArgCodec<T> {
  readonly kind: ArgKind;
  /** Its field in the HTTP API's JSON body. */
  readonly json: string;
  /** Its field in the gRPC request. */
  readonly field: string;
  /**
   * Checks a caller's value: returns it, normalized (one name as a list),
   * or throws a GatewayError `invalid_argument` that says what to fix.
   */
  check(value: unknown, action: string, limits: Limits): T;
  /** Reads it from a JSON body; throws `invalid_argument` for a wrong type. */
  fromJson(body: JsonObject): T;
  /** Reads it from a decoded gRPC request. */
  fromRequest(request: Fields): T;
  /** Writes it into a gRPC request being built. */
  toRequest(value: T, request: Fields): void;
}

/** The kinds of results. */
export type ResultKind =
  | "none"
  | "flag"
  | "count"
  | "strings"
  | "optionalString"
  | "optionalInfo"
  | "infos";

/** The result of an Api method. */
export interface ResultCodec<T> {
  readonly kind: ResultKind;
  /** Its field in the gRPC response; undefined when there is none. */
  readonly field: string | undefined;
  /** The gRPC response that answers `value`. */
  toResponse(value: T): Fields;
  /** The result that a gRPC response carries. */
  fromResponse(response: Fields): T;
}

function invalidJson(problem: string): GatewayError {
  return new GatewayError(
    "invalid_argument",
    `Cannot read request: ${problem}`,
  );
}

function jsonString(body: JsonObject, field: string): string {
  const value = body[field];
  if (typeof value !== "string") {
    throw invalidJson(`"${field}" must be a string`);
  }
  return value;
}

function isStrings(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === "string");
}

/** A string argument; `check` validates it. */
function stringArg(
  kind: ArgKind,
  name: string,
  check: (value: unknown, action: string) => string,
): ArgCodec<string> {
  return {
    kind,
    json: name,
    field: name,
    check: (value, action) => check(value, action),
    fromJson: (body) => jsonString(body, name),
    fromRequest: (request) => request[name] as string,
    toRequest: (value, request) => void (request[name] = value),
  };
}

/** A clientId, as handed out by a gateway service. */
export const clientId: ArgCodec<string> = stringArg(
  "clientId",
  "clientId",
  (value) => {
    nodeIdOf(value);
    return value as string;
  },
);

/** A uid. */
export const uid: ArgCodec<string> = stringArg("uid", "uid", checkUid);

/** A group. */
export const group: ArgCodec<string> = stringArg("group", "group", checkGroup);

/**
 * One uid or group, or a list of them: `json` in the HTTP API (a string or
 * an array of strings), the repeated `field` in gRPC.
 */
export function names(
  of: "uid" | "group",
  json: string,
  field: string,
): ArgCodec<string | readonly string[]> {
  return {
    kind: "names",
    json,
    field,
    check: (value, action) => checkNames(of, value, action),
    fromJson(body) {
      const value = body[json];
      if (typeof value === "string" || isStrings(value)) return value;
      throw invalidJson(`"${json}" must be a string or an array of strings`);
    },
    fromRequest: (request) => request[field] as string[],
    toRequest(value, request) {
      request[field] = typeof value === "string" ? [value] : value;
    },
  };
}

/**
 * A message from the JSON body: `"message"` (a text frame) or
 * `"messageBase64"` (a binary frame); undefined when neither is there.
 */
function jsonMessage(body: JsonObject): Message | undefined {
  const text = body.message;
  const base64 = body.messageBase64;
  if (text !== undefined && base64 !== undefined) {
    throw invalidJson(`give "message" or "messageBase64", not both`);
  }
  if (text !== undefined) {
    if (typeof text !== "string") {
      throw invalidJson(`"message" must be a string`);
    }
    return text;
  }
  if (base64 !== undefined) {
    if (typeof base64 !== "string") {
      throw invalidJson(`"messageBase64" must be a base64 string`);
    }
    try {
      return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    } catch {
      throw invalidJson(`"messageBase64" is not valid base64`);
    }
  }
  return undefined;
}

/** A message to send, the Payload `field` in gRPC. */
export function message(field: string): ArgCodec<Message> {
  return {
    kind: "message",
    json: "message",
    field,
    check: (value, action, limits) =>
      checkMessage(value, action, limits.maxSendBytes),
    fromJson(body) {
      const value = jsonMessage(body);
      if (value === undefined) {
        throw invalidJson(
          `"message" (a text frame) or "messageBase64" (a binary frame) is required`,
        );
      }
      return value;
    },
    fromRequest(request) {
      const value = fromPayload(request[field] as never);
      if (value === undefined) {
        throw new GatewayError(
          "invalid_argument",
          `Cannot read request: ${field} is missing; set ${field}.text or ${field}.binary`,
        );
      }
      return value;
    },
    toRequest: (value, request) => void (request[field] = toPayload(value)),
  };
}

/** A message that may be left out, the Payload `field` in gRPC. */
export function optionalMessage(field: string): ArgCodec<Message | undefined> {
  return {
    kind: "optionalMessage",
    json: "message",
    field,
    check: (value, action, limits) =>
      value === undefined
        ? undefined
        : checkMessage(value, action, limits.maxSendBytes),
    fromJson: jsonMessage,
    fromRequest: (request) => fromPayload(request[field] as never),
    toRequest(value, request) {
      if (value !== undefined) request[field] = toPayload(value);
    },
  };
}

/** Send options: `exclude` in JSON, `excludeClientIds` in gRPC. */
export const sendOptions: ArgCodec<SendOptions | undefined> = {
  kind: "sendOptions",
  json: "exclude",
  field: "excludeClientIds",
  check(value, action) {
    const exclude = checkExclude(
      (value as SendOptions | undefined)?.exclude,
      action,
    );
    for (const id of exclude) nodeIdOf(id);
    return { exclude };
  },
  fromJson(body) {
    const value = body.exclude;
    if (value === undefined) return { exclude: [] };
    if (isStrings(value)) return { exclude: value };
    throw invalidJson(`"exclude" must be an array of strings`);
  },
  fromRequest: (request) => ({ exclude: request.excludeClientIds as string[] }),
  toRequest(value, request) {
    request.excludeClientIds = value?.exclude ?? [];
  },
};

/** An info map. */
export const info: ArgCodec<ClientInfo> = {
  kind: "info",
  json: "info",
  field: "info",
  check: (value, action, limits) => checkInfo(value, action, limits),
  fromJson(body) {
    const value = body.info;
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw invalidJson(`"info" must be an object of strings`);
    }
    return value as ClientInfo;
  },
  fromRequest: (request) => request.info as ClientInfo,
  toRequest: (value, request) => void (request.info = value),
};

/** No result. */
export const none: ResultCodec<void> = {
  kind: "none",
  field: undefined,
  toResponse: () => ({}),
  fromResponse: () => undefined,
};

/** A boolean in `field`. */
export function flag(field: string): ResultCodec<boolean> {
  return {
    kind: "flag",
    field,
    toResponse: (value) => ({ [field]: value }),
    fromResponse: (response) => response[field] as boolean,
  };
}

/** A count, a uint64 `count` in gRPC. */
export const count: ResultCodec<number> = {
  kind: "count",
  field: "count",
  toResponse: (value) => ({ count: BigInt(value) }),
  fromResponse: (response) => Number(response.count as bigint),
};

/** A list of strings in `field`. */
export function strings(field: string): ResultCodec<string[]> {
  return {
    kind: "strings",
    field,
    toResponse: (value) => ({ [field]: value }),
    fromResponse: (response) => response[field] as string[],
  };
}

/** A string in the optional `field`. */
export function optionalString(
  field: string,
): ResultCodec<string | undefined> {
  return {
    kind: "optionalString",
    field,
    toResponse: (value) => value === undefined ? {} : { [field]: value },
    fromResponse: (response) => response[field] as string | undefined,
  };
}

/** An info map in the optional message `info`. */
export const optionalInfo: ResultCodec<ClientInfo | undefined> = {
  kind: "optionalInfo",
  field: "info",
  toResponse: (value) => value === undefined ? {} : { info: { fields: value } },
  fromResponse(response) {
    const value = response.info as ProtoClientInfo | undefined;
    return value === undefined ? undefined : { ...value.fields };
  },
};

/** Info maps by clientId, the map `infos` in gRPC. */
export const infos: ResultCodec<Record<string, ClientInfo>> = {
  kind: "infos",
  field: "infos",
  toResponse(value) {
    const out: Record<string, { fields: ClientInfo }> = {};
    for (const [id, fields] of Object.entries(value)) out[id] = { fields };
    return { infos: out };
  },
  fromResponse(response) {
    const out: Record<string, ClientInfo> = {};
    const map = response.infos as Record<string, ProtoClientInfo>;
    for (const [id, value] of Object.entries(map)) {
      out[id] = { ...value.fields };
    }
    return out;
  },
};
