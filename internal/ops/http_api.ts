// The HTTP+JSON push API for backends that do not speak gRPC:
// `POST /api/<method>` with a JSON body, `Authorization: Bearer <secret>`.
// Every method of the method table, its arguments read from the body by
// the table's codecs, carried out by the same Api that business code uses.
// `<method>` is the Api method's name, as in TypeScript and (in PascalCase)
// in gRPC; a deprecated old name of a method answers as the method does,
// with `Deprecation` and `Link: <successor>` headers (RFC 9745).

import type { Api } from "../../api.ts";
import { GatewayError, IncompleteResultError } from "../../errors.ts";
import type { Logger } from "../base/logger.ts";
import { AUTH_HEADER, bearerChecker } from "../base/secret.ts";
import type { JsonObject } from "../api/codecs.ts";
import {
  argCodecsOf,
  isApiMethod,
  methodOf,
  METHODS,
} from "../api/method_table.ts";
import type { ServiceMetrics } from "./metrics.ts";

/** The path prefix of the HTTP API. */
export const HTTP_API_PREFIX = "/api/";

/** The largest request body the HTTP API reads, in bytes. */
export const MAX_HTTP_API_BODY_BYTES = 1024 * 1024;

/**
 * The `Deprecation` header of an old method name: the date (RFC 9745, a
 * Unix time) from which the name is deprecated, 2026-12-03.
 */
export const DEPRECATED_SINCE = "@1796256000";

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
  resource_exhausted: 429,
  deadline_exceeded: 504,
  incomplete: 502,
  closed: 503,
  internal: 500,
};

/** Makes the HTTP API handler. */
export function createHttpApi(options: HttpApiOptions): HttpApiHandler {
  const { api, metrics, logger } = options;
  const check = bearerChecker(options.secret);
  return async function handleHttpApi(request) {
    const method = new URL(request.url).pathname.slice(HTTP_API_PREFIX.length);
    if (request.method !== "POST") {
      return json(405, errorBody("invalid_argument", "Use POST"), {
        allow: "POST",
      });
    }
    const refused = check(request.headers.get(AUTH_HEADER));
    if (refused !== undefined) {
      metrics.httpApiUnauthorized++;
      return json(401, errorBody(refused.code, refused.message), {
        "www-authenticate": "Bearer",
      });
    }
    try {
      const body = await readBody(request);
      const result = await call(api, method, body);
      logger.debug("http api call", { method });
      return json(200, { result: result ?? null }, deprecation(method));
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
      return json(STATUS[e.code], body, deprecation(method));
    }
  };
}

class UnknownMethod extends Error {}

/** Runs one Api method with the arguments in `body`. */
function call(api: Api, method: string, body: JsonObject): Promise<unknown> {
  if (!isApiMethod(method)) {
    throw new UnknownMethod(
      `Cannot call "${
        method.slice(0, 64)
      }": no such method (see the README's HTTP API section)`,
    );
  }
  const args = argCodecsOf(method).map((codec) => codec.fromJson(body));
  return methodOf(api, method)(...args);
}

/** The headers that mark `method` deprecated, if it is an old name. */
function deprecation(method: string): Record<string, string> {
  const successor = isApiMethod(method) ? METHODS[method].aliasOf : undefined;
  if (successor === undefined) return {};
  return {
    deprecation: DEPRECATED_SINCE,
    link: `<${HTTP_API_PREFIX}${successor}>; rel="successor-version"`,
  };
}

async function readBody(request: Request): Promise<JsonObject> {
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
  return value as JsonObject;
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
