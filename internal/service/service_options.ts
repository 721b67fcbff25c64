// The options of startService with their defaults applied, checked at once.

import type { ServiceOptions } from "../../service.ts";
import { parseHostPort } from "../base/address.ts";
import type { LogLevel } from "../base/logger.ts";
import {
  type CheckedTls,
  checkLogLevel,
  checkNonEmpty,
  checkNonNegative,
  checkOrigins,
  checkPort,
  checkPositive,
  checkSecret,
  checkTls,
} from "../base/options.ts";

/** {@linkcode ServiceOptions} with every default applied, checked. */
export interface ResolvedServiceOptions {
  /** The registers to join: at least one, each `"host:port"`. */
  readonly registers: readonly string[];
  readonly hostname: string;
  readonly port: number;
  readonly rpcPort: number;
  readonly lanIp: string;
  /** `rpcHostname`, or `lanIp` when it is unset. */
  readonly rpcHostname: string;
  /** Undefined: no delivery port. */
  readonly deliveryPort: number | undefined;
  readonly secret: string | undefined;
  readonly tls: CheckedTls | undefined;
  readonly signal: AbortSignal | undefined;
  readonly deadlineMs: number;
  readonly joinTimeoutMs: number;
  readonly pingIntervalMs: number;
  readonly maxPeerQueueBytes: number;
  readonly idleTimeoutMs: number;
  readonly maxBufferedBytes: number;
  readonly maxMessageBytes: number;
  readonly maxSendBytes: number;
  readonly allowedOrigins: ReadonlySet<string> | undefined;
  readonly shutdownTimeoutMs: number;
  readonly logLevel: LogLevel;
  readonly fetch: ServiceOptions["fetch"];
  readonly httpApiSecret: string | undefined;
}

/**
 * Applies the defaults of {@linkcode ServiceOptions} and checks every value:
 * the first bad one throws a TypeError or RangeError that names it and its
 * current value.
 */
export function resolveServiceOptions(
  options: ServiceOptions,
): ResolvedServiceOptions {
  const {
    hostname = "0.0.0.0",
    port = 9201,
    rpcPort = 9101,
    lanIp = "127.0.0.1",
    signal,
    deadlineMs = 2000,
    joinTimeoutMs = 5000,
    pingIntervalMs = 1000,
    maxPeerQueueBytes = 16 * 1024 * 1024,
    idleTimeoutMs = 30_000,
    maxBufferedBytes = 1024 * 1024,
    maxMessageBytes = 1024 * 1024,
    maxSendBytes = 1024 * 1024,
    shutdownTimeoutMs = 5000,
    logLevel = "info",
    fetch,
  } = options;
  const registers = typeof options.register === "string"
    ? [options.register]
    : [...options.register];
  if (registers.length === 0) {
    throw new TypeError(
      "Cannot start: 'register' must name at least one register: current value is []",
    );
  }
  for (const r of registers) {
    try {
      parseHostPort(r, "register address");
    } catch (error) {
      throw new TypeError(
        `Cannot start: 'register' must be "host:port" or a list of them: current value is ${
          JSON.stringify(r)
        }`,
        { cause: error },
      );
    }
  }
  checkPort("port", port);
  checkPort("rpcPort", rpcPort);
  const deliveryPort = options.deliveryPort ?? 0;
  if (
    deliveryPort !== false &&
    !(Number.isInteger(deliveryPort) && deliveryPort >= 0 &&
      deliveryPort <= 65535)
  ) {
    throw new RangeError(
      `Cannot start: 'deliveryPort' must be an integer from 0 to 65535, or false: current value is ${
        JSON.stringify(deliveryPort)
      }`,
    );
  }
  checkNonEmpty("lanIp", lanIp);
  checkPositive("deadlineMs", deadlineMs);
  checkPositive("joinTimeoutMs", joinTimeoutMs);
  checkPositive("pingIntervalMs", pingIntervalMs);
  checkPositive("maxPeerQueueBytes", maxPeerQueueBytes);
  checkNonNegative("idleTimeoutMs", idleTimeoutMs);
  checkPositive("maxBufferedBytes", maxBufferedBytes);
  checkPositive("maxMessageBytes", maxMessageBytes);
  checkPositive("maxSendBytes", maxSendBytes);
  checkNonNegative("shutdownTimeoutMs", shutdownTimeoutMs);
  const allowedOrigins = checkOrigins(options.allowedOrigins);
  const secret = checkSecret(options.secret);
  const tls = checkTls(options.tls);
  const httpApiSecret = options.httpApiSecret === undefined
    ? undefined
    : checkNonEmpty("httpApiSecret", options.httpApiSecret);
  if (fetch !== undefined && typeof fetch !== "function") {
    throw new TypeError(
      `Cannot start: 'fetch' must be a function: current value is ${typeof fetch}`,
    );
  }
  return {
    registers,
    hostname,
    port,
    rpcPort,
    lanIp,
    rpcHostname: options.rpcHostname ?? lanIp,
    deliveryPort: deliveryPort === false ? undefined : deliveryPort,
    secret,
    tls,
    signal,
    deadlineMs,
    joinTimeoutMs,
    pingIntervalMs,
    maxPeerQueueBytes,
    idleTimeoutMs,
    maxBufferedBytes,
    maxMessageBytes,
    maxSendBytes,
    allowedOrigins,
    shutdownTimeoutMs,
    logLevel: checkLogLevel(logLevel),
    fetch,
    httpApiSecret,
  };
}
