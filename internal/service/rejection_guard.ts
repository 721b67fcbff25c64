// Fire-and-forget Api calls: a rejection of this service's Api that nobody
// awaited is logged with this service's logger instead of crashing the
// process. Each service guards only its own rejections, so that several
// services in one process log each to their own logger.

import { GatewayError } from "../../errors.ts";
import type { Logger } from "../base/logger.ts";

/** Watches the process's unhandled rejections for one service's errors. */
export class RejectionGuard implements Disposable {
  readonly #logger: Logger;
  readonly #errors = new WeakSet<GatewayError>();
  readonly #onUnhandled = (event: PromiseRejectionEvent) => {
    const reason = event.reason;
    if (!(reason instanceof GatewayError) || !this.#errors.has(reason)) return;
    event.preventDefault();
    this.#logger.warn("an Api call failed and nobody awaited it", {
      error: reason.message,
    });
  };

  /** Starts watching; `[Symbol.dispose]` stops. */
  constructor(logger: Logger) {
    this.#logger = logger;
    globalThis.addEventListener("unhandledrejection", this.#onUnhandled);
  }

  /** Marks an error that this service's Api rejected with. */
  readonly track = (error: unknown): void => {
    if (error instanceof GatewayError) this.#errors.add(error);
  };

  [Symbol.dispose](): void {
    globalThis.removeEventListener("unhandledrejection", this.#onUnhandled);
  }
}
