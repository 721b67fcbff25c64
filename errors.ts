/**
 * The gateway's error model: one {@linkcode GatewayError} class with a closed
 * set of codes, and {@linkcode IncompleteResultError} for cluster-wide calls
 * that some services did not answer.
 *
 * @module
 */

/**
 * What went wrong, as a closed set of codes.
 *
 * - `invalid_argument`: the caller passed something malformed (a clientId this
 *   gateway did not make, an empty uid, a non-string info value, ...). Fix the
 *   call; retrying will not help.
 * - `unauthenticated`: a register or peer refused the shared secret.
 * - `unavailable`: a service or register could not be reached, or its queue is
 *   full. Retrying later may help.
 * - `resource_exhausted`: a request was larger than a limit allows (a batch
 *   or message over what the receiving service accepts). Retrying the same
 *   request will not help.
 * - `deadline_exceeded`: a service did not answer within the deadline.
 * - `incomplete`: a cluster-wide call got answers from only some services; see
 *   {@linkcode IncompleteResultError}.
 * - `closed`: the register or service was closed.
 * - `internal`: a bug or an unexpected failure.
 *
 * @example Deciding whether a retry may help
 * ```ts
 * import assert from "node:assert/strict";
 * import type { GatewayErrorCode } from "./mod.ts";
 *
 * function retryable(code: GatewayErrorCode): boolean {
 *   return code === "unavailable" || code === "deadline_exceeded" || code === "incomplete";
 * }
 * assert.equal(retryable("unavailable"), true);
 * assert.equal(retryable("invalid_argument"), false);
 * ```
 */
export type GatewayErrorCode =
  | "invalid_argument"
  | "unauthenticated"
  | "unavailable"
  | "resource_exhausted"
  | "deadline_exceeded"
  | "incomplete"
  | "closed"
  | "internal";

/**
 * Options for {@linkcode GatewayError}.
 *
 * @example Keeping the underlying cause
 * ```ts
 * import assert from "node:assert/strict";
 * import { GatewayError, type GatewayErrorOptions } from "./mod.ts";
 *
 * const cause = new Error("connection refused");
 * const options: GatewayErrorOptions = { cause };
 * const error = new GatewayError("unavailable", "Cannot reach 10.0.0.7:9101: connection refused", options);
 * assert.equal(error.cause, cause);
 * ```
 */
export interface GatewayErrorOptions {
  /** The underlying error, if any. */
  cause?: unknown;
}

/**
 * The error every part of the gateway throws or rejects with.
 *
 * @example Telling a malformed clientId apart
 * ```ts
 * import assert from "node:assert/strict";
 * import { GatewayError } from "./errors.ts";
 *
 * const error = new GatewayError("invalid_argument", 'Cannot parse clientId "x": it was not made by this gateway');
 * assert.ok(error instanceof Error);
 * assert.equal(error.code, "invalid_argument");
 * ```
 */
export class GatewayError extends Error {
  /** What went wrong. */
  readonly code: GatewayErrorCode;

  /**
   * Makes an error.
   *
   * @param code What went wrong.
   * @param message What failed and why, e.g. `Cannot bind uid "": uid is empty`.
   * @param options The cause, if any.
   */
  constructor(
    code: GatewayErrorCode,
    message: string,
    options?: GatewayErrorOptions,
  ) {
    super(message, options);
    this.name = "GatewayError";
    this.code = code;
  }

  /**
   * Turns anything thrown into a `GatewayError`: a `GatewayError` is returned
   * as it is, an `AbortError` or `TimeoutError` becomes `closed` or
   * `deadline_exceeded`, anything else becomes `internal` with it as `cause`.
   *
   * @example Wrapping an unknown failure
   * ```ts
   * import assert from "node:assert/strict";
   * import { GatewayError } from "./errors.ts";
   *
   * const error = GatewayError.from(new Error("boom"));
   * assert.equal(error.code, "internal");
   * assert.equal(GatewayError.from(error), error);
   * ```
   *
   * @param reason Whatever was thrown.
   * @returns A `GatewayError` that describes it.
   */
  static from(reason: unknown): GatewayError {
    if (reason instanceof GatewayError) return reason;
    if (reason instanceof DOMException) {
      if (reason.name === "TimeoutError") {
        return new GatewayError("deadline_exceeded", reason.message, {
          cause: reason,
        });
      }
      if (reason.name === "AbortError") {
        return new GatewayError("closed", reason.message, { cause: reason });
      }
    }
    const message = reason instanceof Error ? reason.message : String(reason);
    return new GatewayError("internal", message, { cause: reason });
  }
}

/**
 * A cluster-wide call that some services did not answer (they were
 * unreachable, refused, or missed the deadline). It carries what the other
 * services answered, merged as the full answer would have been, and the RPC
 * addresses that failed.
 *
 * Sends reject with it too (with `partial` undefined) when a service they
 * should have reached could not be reached: every reachable client got the
 * message.
 *
 * @example Using a partial answer
 * ```ts
 * import assert from "node:assert/strict";
 * import { GatewayError, IncompleteResultError } from "./errors.ts";
 *
 * const error = new IncompleteResultError(41, [{
 *   address: "10.0.0.7:9101",
 *   error: new GatewayError("deadline_exceeded", "no answer within 2000 ms"),
 * }]);
 * assert.equal(error.code, "incomplete");
 * assert.equal(error.partial, 41);
 * assert.deepEqual(error.failures.map((f) => f.address), ["10.0.0.7:9101"]);
 * ```
 *
 * @typeParam T The type of the full answer.
 */
export class IncompleteResultError<T = unknown> extends GatewayError {
  /** What the services that answered said, merged. */
  readonly partial: T;
  /** The services that did not answer, and why. */
  readonly failures: readonly PeerFailure[];

  /**
   * Makes an error.
   *
   * @param partial What the services that answered said, merged.
   * @param failures The services that did not answer, and why.
   */
  constructor(partial: T, failures: readonly PeerFailure[]) {
    const list = failures.map((f) => `${f.address} (${f.error.message})`)
      .join(", ");
    super(
      "incomplete",
      `Cannot reach every service: ${failures.length} did not answer: ${list}`,
      { cause: failures[0]?.error },
    );
    this.name = "IncompleteResultError";
    this.partial = partial;
    this.failures = failures;
  }
}

/**
 * A service that did not answer a cluster-wide call.
 *
 * @example Logging which services failed
 * ```ts
 * import assert from "node:assert/strict";
 * import { GatewayError, IncompleteResultError, type PeerFailure } from "./mod.ts";
 *
 * const failure: PeerFailure = {
 *   address: "10.0.0.7:9101",
 *   error: new GatewayError("unavailable", "connection refused"),
 * };
 * const error = new IncompleteResultError(["a.1"], [failure]);
 * assert.deepEqual(error.failures.map((f) => `${f.address}: ${f.error.code}`), [
 *   "10.0.0.7:9101: unavailable",
 * ]);
 * ```
 */
export interface PeerFailure {
  /** The service's RPC address, `host:port`. */
  readonly address: string;
  /** Why it did not answer. */
  readonly error: GatewayError;
}
