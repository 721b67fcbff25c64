// The operator endpoints that services and registers share: `GET /healthz`
// (200 when ready, 503 otherwise, with a small JSON body) and `GET /metrics`
// (Prometheus text).

import { PROMETHEUS_CONTENT_TYPE } from "./prometheus.ts";

/** What `/healthz` reports. */
export interface HealthReport {
  /** `"ready"` answers 200; anything else 503. */
  readonly status: "ready" | "starting" | "closing";
  /** More fields for the JSON body. */
  readonly [field: string]: unknown;
}

/** Where the operator endpoints get their answers. */
export interface OpsSource {
  health(): HealthReport;
  metrics(): string;
}

/**
 * The response for an operator endpoint, or `undefined` when `request` is
 * for another path.
 */
export function opsResponse(
  request: Request,
  source: OpsSource,
): Response | undefined {
  const path = new URL(request.url).pathname;
  if (path !== "/healthz" && path !== "/metrics") return undefined;
  if (request.method !== "GET" && request.method !== "HEAD") {
    return new Response("Use GET\n", {
      status: 405,
      headers: { allow: "GET, HEAD" },
    });
  }
  const headers = { "cache-control": "no-store" };
  if (path === "/healthz") {
    const report = source.health();
    return new Response(JSON.stringify(report) + "\n", {
      status: report.status === "ready" ? 200 : 503,
      headers: { ...headers, "content-type": "application/json" },
    });
  }
  return new Response(source.metrics(), {
    headers: { ...headers, "content-type": PROMETHEUS_CONTENT_TYPE },
  });
}
