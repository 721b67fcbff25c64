// One line per event on stderr, with levels.

/**
 * How much to log on stderr, one line per event: each level includes the
 * ones before it. `info` (the default) logs starts, stops, membership
 * changes and problems, never a line per message or per ping; `debug` adds
 * a line per client connect and close, and more.
 *
 * @example Quiet logs
 * ```ts
 * import assert from "node:assert/strict";
 * import { type LogLevel, startRegister } from "../../mod.ts";
 *
 * const logLevel: LogLevel = "warn";
 * await using register = await startRegister({ hostname: "127.0.0.1", port: 0, logLevel });
 * assert.ok(register.port > 0);
 * ```
 */
export type LogLevel = "error" | "warn" | "info" | "debug";

const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

/** Extra fields of a log line. */
export type LogFields = Record<string, unknown>;

/** Where the gateway writes what happens. */
export interface Logger {
  error(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
}

/** Whether `value` names a log level. */
export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === "string" && value in RANK;
}

/** An error as a log field: its stack when it has one, else its message. */
export function errorText(error: unknown): string {
  return error instanceof Error
    ? (error.stack ?? error.message)
    : String(error);
}

/** A logger that writes lines at `level` and above to stderr. */
export function createLogger(name: string, level: LogLevel): Logger {
  const max = RANK[level];
  const encoder = new TextEncoder();
  function write(at: LogLevel, message: string, fields?: LogFields): void {
    if (RANK[at] > max) return;
    let line = `${new Date().toISOString()} ${
      at.toUpperCase().padEnd(5)
    } ${name}: ${message}`;
    if (fields !== undefined) {
      for (const [key, value] of Object.entries(fields)) {
        line += ` ${key}=${
          typeof value === "string" && !/[\s"=]/.test(value)
            ? value
            : JSON.stringify(value)
        }`;
      }
    }
    try {
      Deno.stderr.writeSync(encoder.encode(line + "\n"));
    } catch {
      // stderr is gone; nothing sensible is left to do.
    }
  }
  return {
    error: (message, fields) => write("error", message, fields),
    warn: (message, fields) => write("warn", message, fields),
    info: (message, fields) => write("info", message, fields),
    debug: (message, fields) => write("debug", message, fields),
  };
}
