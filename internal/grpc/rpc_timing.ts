// A client interceptor that times unary calls into a histogram. Streams are
// left alone: their lifetime is not a latency.

import type { Interceptor } from "npm:@connectrpc/connect@2.2.0";

/** Observes each unary call's duration, in seconds, into `histogram`. */
export function timeUnaryCalls(
  histogram: { observe(seconds: number): void },
): Interceptor {
  return (next) => async (req) => {
    if (req.stream) return await next(req);
    const start = performance.now();
    try {
      return await next(req);
    } finally {
      histogram.observe((performance.now() - start) / 1000);
    }
  };
}
