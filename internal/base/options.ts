// Eager checks of start options. Bad options are programming errors and
// throw TypeError or RangeError, as Deno's standard library does.

import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import type { TlsOptions } from "../../tls.ts";
import { isLogLevel, type LogLevel } from "./logger.ts";

/** Returns `value` if it is a port (0 to 65535), else throws a RangeError. */
export function checkPort(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 65535) {
    throw new RangeError(
      `Cannot start: '${name}' must be an integer from 0 to 65535: current value is ${value}`,
    );
  }
  return value;
}

/** Returns `value` if it is a positive integer, else throws a RangeError. */
export function checkPositive(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0) {
    throw new RangeError(
      `Cannot start: '${name}' must be a positive integer: current value is ${value}`,
    );
  }
  return value;
}

/** Returns `value` if it is 0 or a positive integer, else throws a RangeError. */
export function checkNonNegative(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) {
    throw new RangeError(
      `Cannot start: '${name}' must be 0 or a positive integer: current value is ${value}`,
    );
  }
  return value;
}

/**
 * Returns the origins as a set if each is an origin as browsers send it
 * (`"https://example.com"`, `"http://localhost:8000"`), else throws a
 * TypeError.
 */
export function checkOrigins(
  value: readonly string[] | undefined,
): ReadonlySet<string> | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) {
    throw new TypeError(
      `Cannot start: 'allowedOrigins' must be an array of origins: current value is ${
        JSON.stringify(value)
      }`,
    );
  }
  for (const origin of value) {
    let parsed: string | undefined;
    try {
      parsed = new URL(origin).origin;
    } catch {
      // Reported below.
    }
    if (parsed !== origin || parsed === "null") {
      throw new TypeError(
        `Cannot start: 'allowedOrigins' must hold origins like "https://example.com" (scheme, host and port only, lower case, no trailing slash): current value has ${
          JSON.stringify(origin)
        }`,
      );
    }
  }
  return new Set(value);
}

/** Returns `value` if it is a non-empty string, else throws a TypeError. */
export function checkNonEmpty(name: string, value: unknown): string {
  if (typeof value !== "string" || value.length === 0) {
    throw new TypeError(
      `Cannot start: '${name}' must be a non-empty string: current value is ${
        JSON.stringify(value)
      }`,
    );
  }
  return value;
}

/** Returns `value` if it is a log level, else throws a TypeError. */
export function checkLogLevel(value: unknown): LogLevel {
  if (!isLogLevel(value)) {
    throw new TypeError(
      `Cannot start: 'logLevel' must be "error", "warn", "info" or "debug": current value is ${
        JSON.stringify(value)
      }`,
    );
  }
  return value;
}

/** Returns the secret if it is unset or non-empty, else throws a TypeError. */
export function checkSecret(value: unknown): string | undefined {
  return value === undefined ? undefined : checkNonEmpty("secret", value);
}

/**
 * Runs `close` when `signal` aborts. Returns a function that stops watching.
 */
export function onAbort(
  signal: AbortSignal | undefined,
  close: () => unknown,
): () => void {
  if (signal === undefined) return () => {};
  const listener = () => void close();
  signal.addEventListener("abort", listener, { once: true });
  return () => signal.removeEventListener("abort", listener);
}

/** TLS options after checking: PEM strings and whether TLS is mutual. */
export interface CheckedTls {
  readonly cert: string;
  readonly key: string;
  readonly ca: string | undefined;
  readonly mutual: boolean;
}

/**
 * Returns the TLS options if they are unset or usable, else throws: a
 * TypeError for a missing or unparsable certificate or key, a key that does
 * not belong to the certificate, or `mutual` without `ca`.
 */
export function checkTls(
  value: TlsOptions | undefined,
): CheckedTls | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "object" || value === null) {
    throw new TypeError(
      `Cannot start: 'tls' must be an object with cert and key: current value is ${
        JSON.stringify(value)
      }`,
    );
  }
  const { cert, key, ca, mutual = false } = value;
  checkNonEmpty("tls.cert", cert);
  checkNonEmpty("tls.key", key);
  if (ca !== undefined) checkNonEmpty("tls.ca", ca);
  if (typeof mutual !== "boolean") {
    throw new TypeError(
      `Cannot start: 'tls.mutual' must be a boolean: current value is ${
        JSON.stringify(mutual)
      }`,
    );
  }
  if (mutual && ca === undefined) {
    throw new TypeError(
      "Cannot start: 'tls.mutual' needs 'tls.ca' to verify client certificates: current value of 'tls.ca' is undefined",
    );
  }
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch (error) {
    throw new TypeError(
      "Cannot start: 'tls.cert' is not a PEM certificate",
      { cause: error },
    );
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    throw new TypeError(
      "Cannot start: 'tls.key' is not a PEM private key",
      { cause: error },
    );
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    throw new TypeError(
      `Cannot start: 'tls.key' does not belong to 'tls.cert': the certificate is for ${certificate.subject}`,
    );
  }
  return { cert, key, ca, mutual };
}
