// The HTTP+JSON push API for backends that do not speak gRPC:
// `POST /api/<method>` with a JSON body, `Authorization: Bearer <secret>`.
// An explicit route table (a switch over method names), mapping to the same
// Api that business code uses.

import { createHash, timingSafeEqual } from "node:crypto";
import type { Api, ClientInfo, Message } from "../../api.ts";
import { GatewayError, IncompleteResultError } from "../../errors.ts";
import type { Logger } from "../base/logger.ts";
import type { ServiceMetrics } from "./metrics.ts";

/** The path prefix of the HTTP API. */
export const HTTP_API_PREFIX = "/api/";

/** The largest request body the HTTP API reads, in bytes. */
export const MAX_HTTP_API_BODY_BYTES = 1024 * 1024;

/** Options of {@linkcode createHttpApi}. */
export interface HttpApiOptions {
  readonly api: Api;
  /** Requests must carry `Authorization: Bearer <secret>`. */
  readonly secret: string;
  readonly metrics: ServiceMetrics;
  readonly logger: Logger;
}

/** A request handler for paths under {@linkcode HTTP_API_PREFIX}. */
export type HttpApiHandler = (request: Request) => Promise<Response>;

/** Status codes of the HTTP API, by error code. */
const STATUS: Record<GatewayError["code"], number> = {
  invalid_argument: 400,
  unauthenticated: 401,
  unavailable: 503,
  deadline_exceeded: 504,
  incomplete: 502,
  closed: 503,
  internal: 500,
};

/** Makes the HTTP API handler. */
export function createHttpApi(options: HttpApiOptions): HttpApiHandler {
  const { api, metrics, logger } = options;
  const expected = digest(`Bearer ${options.secret}`);
  return async function handleHttpApi(request) {
    const method = new URL(request.url).pathname.slice(HTTP_API_PREFIX.length);
    if (request.method !== "POST") {
      return json(405, errorBody("invalid_argument", "Use POST"), {
        allow: "POST",
      });
    }
    const auth = request.headers.get("authorization");
    if (auth === null || !timingSafeEqual(digest(auth), expected)) {
      metrics.httpApiUnauthorized++;
      return json(
        401,
        errorBody(
          "unauthenticated",
          auth === null
            ? "Missing secret: send `Authorization: Bearer <secret>`"
            : "Wrong secret",
        ),
        { "www-authenticate": "Bearer" },
      );
    }
    try {
      const body = await readBody(request);
      const result = await call(api, method, body);
      logger.debug("http api call", { method });
      return json(200, { result: result ?? null });
    } catch (error) {
      if (error instanceof UnknownMethod) {
        return json(404, errorBody("invalid_argument", error.message));
      }
      const e = GatewayError.from(error);
      logger.debug("http api call failed", { method, error: e.message });
      const body = errorBody(e.code, e.message);
      if (e instanceof IncompleteResultError) {
        body.error.partial = e.partial ?? null;
        body.error.failures = e.failures.map((f) => ({
          address: f.address,
          code: f.error.code,
          message: f.error.message,
        }));
      }
      return json(STATUS[e.code], body);
    }
  };
}

class UnknownMethod extends Error {}

/** Runs one Api method with the arguments in `body`. */
function call(api: Api, method: string, body: Body): Promise<unknown> {
  switch (method) {
    case "sendToAll":
      return api.sendToAll(message(body), { exclude: list(body, "exclude") });
    case "sendToClient":
      return api.sendToClient(str(body, "clientId"), message(body));
    case "sendToUid":
      return api.sendToUid(names(body, "uid"), message(body));
    case "sendToGroup":
      return api.sendToGroup(names(body, "group"), message(body), {
        exclude: list(body, "exclude"),
      });
    case "closeClient":
      return api.closeClient(str(body, "clientId"), optionalMessage(body));
    case "bindUid":
      return api.bindUid(str(body, "clientId"), str(body, "uid"));
    case "unbindUid":
      return api.unbindUid(str(body, "clientId"));
    case "isUidOnline":
      return api.isUidOnline(str(body, "uid"));
    case "getUidByClientId":
      return api.getUidByClientId(str(body, "clientId"));
    case "getClientIdsByUid":
      return api.getClientIdsByUid(str(body, "uid"));
    case "joinGroup":
      return api.joinGroup(str(body, "clientId"), str(body, "group"));
    case "leaveGroup":
      return api.leaveGroup(str(body, "clientId"), str(body, "group"));
    case "ungroup":
      return api.ungroup(str(body, "group"));
    case "getClientCountByGroup":
      return api.getClientCountByGroup(str(body, "group"));
    case "getClientIdsByGroup":
      return api.getClientIdsByGroup(str(body, "group"));
    case "getUidsByGroup":
      return api.getUidsByGroup(str(body, "group"));
    case "getUidCountByGroup":
      return api.getUidCountByGroup(str(body, "group"));
    case "getAllUid":
      return api.getAllUid();
    case "getAllUidCount":
      return api.getAllUidCount();
    case "getAllGroups":
      return api.getAllGroups();
    case "getAllClientIds":
      return api.getAllClientIds();
    case "getAllClientCount":
      return api.getAllClientCount();
    case "isOnline":
      return api.isOnline(str(body, "clientId"));
    case "getInfo":
      return api.getInfo(str(body, "clientId"));
    case "setInfo":
      return api.setInfo(str(body, "clientId"), info(body));
    case "updateInfo":
      return api.updateInfo(str(body, "clientId"), info(body));
    case "getClientInfosByGroup":
      return api.getClientInfosByGroup(str(body, "group"));
    case "getAllClientInfos":
      return api.getAllClientInfos();
    default:
      throw new UnknownMethod(
        `Cannot call "${
          method.slice(0, 64)
        }": no such method (see the README's HTTP API section)`,
      );
  }
}

type Body = Record<string, unknown>;

async function readBody(request: Request): Promise<Body> {
  const length = Number(request.headers.get("content-length") ?? "0");
  if (length > MAX_HTTP_API_BODY_BYTES) throw tooLarge();
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body !== null) {
    for await (const chunk of request.body) {
      size += chunk.byteLength;
      if (size > MAX_HTTP_API_BODY_BYTES) throw tooLarge();
      chunks.push(chunk);
    }
  }
  if (size === 0) return {};
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw invalid(`the body is not JSON: ${(error as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid("the body must be a JSON object");
  }
  return value as Body;
}

function tooLarge(): GatewayError {
  return invalid(`the body is larger than ${MAX_HTTP_API_BODY_BYTES} bytes`);
}

function invalid(problem: string): GatewayError {
  return new GatewayError(
    "invalid_argument",
    `Cannot read request: ${problem}`,
  );
}

// The Api itself validates values (empty uids, unknown clientIds, ...);
// these only check JSON types, so that a number never reaches it.

function str(body: Body, field: string): string {
  const value = body[field];
  if (typeof value !== "string") throw invalid(`"${field}" must be a string`);
  return value;
}

function names(body: Body, field: string): string | string[] {
  const value = body[field];
  if (typeof value === "string") return value;
  if (Array.isArray(value) && value.every((v) => typeof v === "string")) {
    return value as string[];
  }
  throw invalid(`"${field}" must be a string or an array of strings`);
}

function list(body: Body, field: string): string[] {
  const value = body[field];
  if (value === undefined) return [];
  if (Array.isArray(value) && value.every((v) => typeof v === "string")) {
    return value as string[];
  }
  throw invalid(`"${field}" must be an array of strings`);
}

function info(body: Body): ClientInfo {
  const value = body.info;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid(`"info" must be an object of strings`);
  }
  return value as ClientInfo;
}

function optionalMessage(body: Body): Message | undefined {
  const text = body.message;
  const base64 = body.messageBase64;
  if (text !== undefined && base64 !== undefined) {
    throw invalid(`give "message" or "messageBase64", not both`);
  }
  if (text !== undefined) {
    if (typeof text !== "string") throw invalid(`"message" must be a string`);
    return text;
  }
  if (base64 !== undefined) {
    if (typeof base64 !== "string") {
      throw invalid(`"messageBase64" must be a base64 string`);
    }
    try {
      return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    } catch {
      throw invalid(`"messageBase64" is not valid base64`);
    }
  }
  return undefined;
}

function message(body: Body): Message {
  const value = optionalMessage(body);
  if (value === undefined) {
    throw invalid(
      `"message" (a text frame) or "messageBase64" (a binary frame) is required`,
    );
  }
  return value;
}

interface ErrorBody {
  error: {
    code: string;
    message: string;
    partial?: unknown;
    failures?: unknown;
  };
}

function errorBody(code: string, message: string): ErrorBody {
  return { error: { code, message } };
}

function json(
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

function digest(value: string): Uint8Array {
  return createHash("sha256").update(value).digest();
}
