// The application a service runs, swappable while its clients stay
// connected (service.reload). Every hook call takes the application that is
// current when the call starts, so a client's events, which run one after
// another, switch from the old code to the new between two events: one
// that is running finishes on the old code, the next one runs on the new.
// A replaced application is stopped (onStop) once its running calls have
// settled.

import type { Application, Context } from "../../application.ts";
import { GatewayError } from "../../errors.ts";
import { errorText, type Logger } from "../base/logger.ts";
import { describe } from "../base/describe.ts";

/** The hooks an Application may have; each must be a function when set. */
const HOOKS = [
  "onStart",
  "onStop",
  "onHandshake",
  "onConnect",
  "onMessage",
  "onClose",
] as const satisfies readonly (keyof Application)[];

/** One application's time in the slot. */
interface Generation {
  readonly app: Application;
  /** Hook calls that started on this application and have not settled. */
  running: number;
  /** Called when `running` drops to 0, while someone waits for that. */
  idle: (() => void) | undefined;
}

/** What the slot works with. */
export interface ApplicationSlotOptions {
  /** What onStart and onStop get. */
  readonly ctx: Context;
  readonly logger: Logger;
  /**
   * How long the hook calls still running on a replaced application are
   * waited for before its onStop runs anyway.
   */
  readonly drainTimeoutMs: number;
}

/** Holds the running application and swaps it. */
export class ApplicationSlot {
  readonly #options: ApplicationSlotOptions;
  #now: Generation;
  /** The reloads asked for, one after another. */
  #reloads: Promise<void> = Promise.resolve();
  #reloaded = 0;
  #closed = false;

  constructor(app: Application, options: ApplicationSlotOptions) {
    this.#now = { app, running: 0, idle: undefined };
    this.#options = options;
  }

  /** The application that new hook calls run on. */
  get app(): Application {
    return this.#now.app;
  }

  /**
   * Calls `hook` with the current application, counting the call as
   * running on it until its result settles.
   */
  run<T>(hook: (app: Application) => T | Promise<T>): T | Promise<T> {
    const generation = this.#now;
    generation.running++;
    let result: T | Promise<T>;
    try {
      result = hook(generation.app);
    } catch (error) {
      this.#settled(generation);
      throw error;
    }
    if (isThenable(result)) {
      return Promise.resolve(result).finally(() => this.#settled(generation));
    }
    this.#settled(generation);
    return result;
  }

  /**
   * Replaces the application, after the reloads asked for before: runs
   * `app.onStart`, swaps, waits for the calls still running on the old
   * application (at most `drainTimeoutMs`), then runs its onStop. Rejects
   * with `invalid_argument` for something that is not an Application or is
   * the one running, with `closed` once the service closes, and with the
   * error of a failed onStart (the old application stays).
   */
  replace(app: Application): Promise<void> {
    let checked: Application;
    try {
      checked = checkApplication(app);
    } catch (error) {
      return Promise.reject(error);
    }
    const done = this.#reloads.then(() => this.#replace(checked));
    this.#reloads = done.catch(() => {});
    return done;
  }

  /**
   * Refuses reloads from now on; resolves when the ones under way are done
   * (the service stops the application that is current then).
   */
  close(): Promise<void> {
    this.#closed = true;
    return this.#reloads;
  }

  async #replace(app: Application): Promise<void> {
    if (this.#closed) throw closedError();
    if (app === this.#now.app) {
      throw new GatewayError(
        "invalid_argument",
        "Cannot reload: this Application is the one running already; pass a new object (import the module again or call its factory again)",
      );
    }
    const { ctx, logger } = this.#options;
    if (app.onStart !== undefined) {
      try {
        await app.onStart(ctx);
      } catch (error) {
        logger.error(
          "onStart of the new application failed; keeping the running one",
          { error: errorText(error) },
        );
        throw error;
      }
    }
    if (this.#closed) {
      // Started, but never swapped in: it is stopped as it was started.
      await this.#stop(app);
      throw closedError();
    }
    const old = this.#now;
    this.#now = { app, running: 0, idle: undefined };
    const reload = ++this.#reloaded;
    const startedAt = Date.now();
    if (!await this.#drained(old)) {
      logger.warn(
        "hooks of the replaced application still run; stopping it anyway",
        { running: old.running, waitedMs: this.#options.drainTimeoutMs },
      );
    }
    await this.#stop(old.app);
    logger.info("application reloaded", {
      reload,
      tookMs: Date.now() - startedAt,
    });
  }

  /** Whether the calls running on `generation` settled in time. */
  #drained(generation: Generation): Promise<boolean> {
    if (generation.running === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        generation.idle = undefined;
        resolve(false);
      }, this.#options.drainTimeoutMs);
      generation.idle = () => {
        clearTimeout(timer);
        generation.idle = undefined;
        resolve(true);
      };
    });
  }

  async #stop(app: Application): Promise<void> {
    if (app.onStop === undefined) return;
    try {
      await app.onStop(this.#options.ctx);
    } catch (error) {
      this.#options.logger.error("onStop of the replaced application failed", {
        error: errorText(error),
      });
    }
  }

  #settled(generation: Generation): void {
    if (--generation.running === 0) generation.idle?.();
  }
}

/** `app` if it is an Application: an object whose hooks are functions. */
export function checkApplication(app: unknown): Application {
  if (typeof app !== "object" || app === null || Array.isArray(app)) {
    throw new GatewayError(
      "invalid_argument",
      `Cannot reload: the application must be an Application (an object of hooks such as onMessage): current value is ${
        describe(app)
      }`,
    );
  }
  for (const hook of HOOKS) {
    const value = (app as Record<string, unknown>)[hook];
    if (value !== undefined && typeof value !== "function") {
      throw new GatewayError(
        "invalid_argument",
        `Cannot reload: the application's ${hook} must be a function or unset: current value is ${
          describe(value)
        }`,
      );
    }
  }
  return app as Application;
}

function closedError(): GatewayError {
  return new GatewayError(
    "closed",
    "Cannot reload: the service is closing; start a new one instead",
  );
}

function isThenable<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof value === "object" && value !== null &&
    typeof (value as { then?: unknown }).then === "function";
}
