// "host:port" addresses of registers and services.

import { GatewayError } from "../../errors.ts";
import { describe } from "../base/describe.ts";

/** A parsed `host:port`. */
export interface HostPort {
  /** Host name or IP address; IPv6 without brackets. */
  readonly host: string;
  readonly port: number;
}

const HOST_PATTERN = /^[A-Za-z0-9.-]{1,253}$/;
const IPV6_PATTERN = /^[0-9A-Fa-f:.]{2,45}$/;

/**
 * Parses `host:port` (IPv6 as `[::1]:port`).
 *
 * @throws {GatewayError} `invalid_argument` naming `what` when it is not one.
 */
export function parseHostPort(value: unknown, what: string): HostPort {
  if (typeof value === "string") {
    const match = /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(value);
    if (match !== null) {
      const v6 = match[1];
      const host = v6 ?? match[2]!;
      const port = Number(match[3]);
      const hostOk = v6 !== undefined
        ? IPV6_PATTERN.test(v6)
        : HOST_PATTERN.test(host);
      if (hostOk && port >= 1 && port <= 65535) return { host, port };
    }
  }
  throw new GatewayError(
    "invalid_argument",
    `Cannot use ${what} ${
      describe(value)
    }: expected "host:port" with a port from 1 to 65535`,
  );
}

/** Formats a host and port as `host:port`, bracketing IPv6. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Whether a host name or address is on the loopback interface. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}
