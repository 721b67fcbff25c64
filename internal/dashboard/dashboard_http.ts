// The dashboard's two routes on a register's operator port: `GET /` (the
// page, the same for everyone: it holds no secret) and
// `GET /dashboard/state` (the JSON it polls), which asks for the dashboard
// token when the register has one, and refuses everyone when the register
// has a cluster secret but no dashboard token.

import { authValue, secretMatcher } from "../base/secret.ts";
import type { DashboardState } from "./dashboard_state.ts";
import { DASHBOARD_CSP, DASHBOARD_PAGE } from "./dashboard_page.ts";

/** The path of the state that the page polls. */
export const DASHBOARD_STATE_PATH = "/dashboard/state";

/** Wrong tokens allowed per window, past which every try is refused. */
const MAX_FAILURES = 20;
/** The window of {@linkcode MAX_FAILURES}, in milliseconds. */
const FAILURE_WINDOW_MS = 10_000;

/** Options of {@linkcode createDashboard}. */
export interface DashboardOptions {
  /** Whether the register has a cluster secret. */
  readonly clusterSecret: boolean;
  /**
   * The token that `GET /dashboard/state` asks for (`authorization: Bearer
   * <token>`); undefined for none: then the state is open without a
   * cluster secret, and refused with one.
   */
  readonly token: string | undefined;
  /** The state now. */
  readonly state: () => DashboardState;
}

/** Why the state was refused, in the JSON of a 401, 403 or 429. */
export type DashboardRefusal =
  | "dashboard_token_required"
  | "dashboard_token_wrong"
  | "dashboard_token_not_set"
  | "dashboard_too_many_tries";

/**
 * Makes the dashboard's handler: it answers its two paths, and `undefined`
 * for any other request.
 */
export function createDashboard(
  options: DashboardOptions,
): (request: Request) => Response | undefined {
  const { clusterSecret, token, state } = options;
  const matches = token === undefined
    ? undefined
    : secretMatcher(authValue(token));
  let windowStart = 0;
  let failures = 0;
  const refuse = (
    status: number,
    code: DashboardRefusal,
    message: string,
  ) =>
    json({ error: { code, message } }, status, {
      ...(status === 401
        ? { "www-authenticate": 'Bearer realm="wsgate dashboard"' }
        : {}),
    });
  const check = (request: Request): Response | undefined => {
    if (token === undefined) {
      if (!clusterSecret) return undefined;
      return refuse(
        403,
        "dashboard_token_not_set",
        "This register has a cluster secret and no dashboard token, so its dashboard is off. Start the register with --dashboard-token-file <file> (or WSGATE_DASHBOARD_TOKEN_FILE, or the dashboardToken option of startRegister), a token of its own, not the cluster secret; then enter that token here.",
      );
    }
    const now = performance.now();
    if (now - windowStart > FAILURE_WINDOW_MS) {
      windowStart = now;
      failures = 0;
    }
    if (failures >= MAX_FAILURES) {
      return refuse(
        429,
        "dashboard_too_many_tries",
        `Too many wrong dashboard tokens: wait ${
          Math.ceil(FAILURE_WINDOW_MS / 1000)
        } seconds and try again`,
      );
    }
    const given = request.headers.get("authorization");
    if (given === null || given === "") {
      return refuse(
        401,
        "dashboard_token_required",
        "This register's dashboard needs its dashboard token (the one of --dashboard-token-file, not the cluster secret)",
      );
    }
    if (matches!(given)) return undefined;
    failures++;
    return refuse(401, "dashboard_token_wrong", "Wrong dashboard token");
  };
  return (request) => {
    const path = new URL(request.url).pathname;
    if (path !== "/" && path !== DASHBOARD_STATE_PATH) return undefined;
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("Use GET\n", {
        status: 405,
        headers: { allow: "GET, HEAD" },
      });
    }
    if (path === "/") {
      return new Response(DASHBOARD_PAGE, {
        headers: {
          ...COMMON_HEADERS,
          "content-type": "text/html; charset=utf-8",
          "content-security-policy": DASHBOARD_CSP,
          "x-frame-options": "DENY",
        },
      });
    }
    return check(request) ?? json(state(), 200);
  };
}

const COMMON_HEADERS = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

function json(
  body: unknown,
  status: number,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: {
      ...COMMON_HEADERS,
      ...headers,
      "content-type": "application/json",
    },
  });
}
