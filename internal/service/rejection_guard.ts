// Fire-and-forget Api calls: a GatewayError nobody awaited is logged
// instead of crashing the process.

import { GatewayError } from "../../errors.ts";
import type { Logger } from "../base/logger.ts";

let guards = 0;
let guardLogger: Logger | undefined;

function onUnhandledRejection(event: PromiseRejectionEvent): void {
  if (!(event.reason instanceof GatewayError)) return;
  event.preventDefault();
  guardLogger?.warn("an Api call failed and nobody awaited it", {
    error: event.reason.message,
  });
}

/**
 * Api calls made without `await` (fire and forget) must not crash the
 * process when a peer fails: their GatewayErrors are logged instead, with
 * the logger of the service started last. Returns the function that stops
 * guarding; the guard stays while any service that asked for it runs.
 */
export function guardUnhandledRejections(logger: Logger): () => void {
  if (guards++ === 0) {
    globalThis.addEventListener("unhandledrejection", onUnhandledRejection);
  }
  guardLogger = logger;
  return () => {
    if (--guards === 0) {
      globalThis.removeEventListener(
        "unhandledrejection",
        onUnhandledRejection,
      );
      guardLogger = undefined;
    }
  };
}
