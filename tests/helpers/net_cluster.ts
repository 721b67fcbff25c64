// Test helpers: registers and services of the network tests as processes,
// on loopback or inside hosts of a NetLab (tests/helpers/netns.ts), with
// short keepalive timings, the cluster secret, and the HTTP API on, so the
// test process can ask any service from outside (`callApi`).

import { Child } from "./processes.ts";
import { parseReadyLine, type ServiceInfo } from "./processes.ts";
import type { NetHost } from "./netns.ts";

/** The cluster secret of the network tests. */
export const NET_SECRET = "net-test-secret";
/** The HTTP API token of their services. */
export const NET_API_TOKEN = "net-test-api-token";

const ENV = {
  WSGATE_SECRET: NET_SECRET,
  WSGATE_HTTP_API_SECRET: NET_API_TOKEN,
};

/** Options of {@linkcode startNetRegister}. */
export interface NetRegisterOptions {
  /** Runs inside this host, on its address; unset: on loopback. */
  host?: NetHost;
  /**
   * The port; 0 picks a free one.
   *
   * @default {8101 in a host, 0 on loopback}
   */
  port?: number;
  /**
   * The register pings each service this often and drops one that does
   * not answer within twice it.
   *
   * @default {250}
   */
  pingIntervalMs?: number;
}

/** A register process and the address services join. */
export interface NetRegister {
  readonly child: Child;
  readonly address: string;
  readonly port: number;
}

/** Starts tests/fixtures/tuned_register.ts. */
export async function startNetRegister(
  options: NetRegisterOptions = {},
): Promise<NetRegister> {
  const { host, pingIntervalMs = 250 } = options;
  const hostname = host?.ip ?? "127.0.0.1";
  const port = options.port ?? (host === undefined ? 0 : 8101);
  const child = await Child.start("tests/fixtures/tuned_register.ts", [
    "--hostname",
    hostname,
    "--port",
    String(port),
    "--ping-interval-ms",
    String(pingIntervalMs),
    "--heartbeat-ms",
    String(pingIntervalMs),
  ], {
    env: ENV,
    captureStderr: true,
    ...(host === undefined ? {} : { prefix: host.exec }),
  });
  const match = /listening on (\S+):(\d+)$/.exec(child.first);
  if (match === null) throw new Error(`unexpected line: ${child.first}`);
  return { child, address: `${hostname}:${match[2]}`, port: Number(match[2]) };
}

/** Options of {@linkcode startNetService}. */
export interface NetServiceOptions {
  /** The registers to join. */
  registers: readonly string[];
  /** Runs inside this host; unset: on loopback with free ports. */
  host?: NetHost;
  /** The service's name (its log lines and /healthz). */
  name?: string;
  /**
   * The address peers dial: a delay proxy's, say.
   *
   * @default {the host's address}
   */
  lanIp?: string;
  /**
   * Keepalive pings to registers and peers.
   *
   * @default {250}
   */
  pingIntervalMs?: number;
  /**
   * The longest a call or delivery to a peer may take.
   *
   * @default {2000}
   */
  deadlineMs?: number;
  /** More flags, after the others. */
  args?: readonly string[];
}

/** A service process and where to reach it from the test process. */
export interface NetService {
  readonly child: Child;
  readonly info: ServiceInfo;
  /** The address of its WebSocket port, `host:port`. */
  readonly address: string;
  /** `ws://address/`. */
  readonly ws: string;
  /** `http://address`. */
  readonly http: string;
}

/** In a host, every service uses these ports (each host has its own). */
export const HOST_PORTS = { ws: 9201, rpc: 9101, delivery: 9102 } as const;

/** Starts service.ts with tests/fixtures/net_app.ts. */
export async function startNetService(
  options: NetServiceOptions,
): Promise<NetService> {
  const { host, pingIntervalMs = 250, deadlineMs = 2000 } = options;
  const ip = host?.ip ?? "127.0.0.1";
  const lanIp = options.lanIp ?? ip;
  const ports = host === undefined
    ? { ws: 0, rpc: 0, delivery: 0 }
    : HOST_PORTS;
  const child = await Child.start("service.ts", [
    "--app",
    "tests/fixtures/net_app.ts",
    "--register",
    options.registers.join(","),
    "--hostname",
    ip,
    "--port",
    String(ports.ws),
    "--rpc-port",
    String(ports.rpc),
    "--delivery-port",
    String(ports.delivery),
    "--lan-ip",
    lanIp,
    "--rpc-hostname",
    lanIp === ip ? ip : "0.0.0.0",
    "--ping-interval-ms",
    String(pingIntervalMs),
    "--deadline-ms",
    String(deadlineMs),
    "--rate-limit",
    "off",
    "--log-level",
    "warn",
    ...(options.name === undefined ? [] : ["--name", options.name]),
    ...(options.args ?? []),
  ], {
    env: ENV,
    captureStderr: true,
    ...(host === undefined ? {} : { prefix: host.exec }),
  });
  const info = parseReadyLine(child.first);
  const address = `${ip}:${info.port}`;
  return {
    child,
    info,
    address,
    ws: `ws://${address}/`,
    http: `http://${address}`,
  };
}

/** An error answer of the HTTP API. */
export class ApiCallError extends Error {
  readonly status: number;
  readonly body: unknown;
  constructor(method: string, status: number, body: unknown) {
    super(`${method} answered ${status}: ${JSON.stringify(body)}`);
    this.status = status;
    this.body = body;
  }
}

/**
 * Calls an Api method through a service's HTTP API; throws
 * {@linkcode ApiCallError} unless it answered 200.
 */
export async function callApi(
  service: Pick<NetService, "http">,
  method: string,
  body: Record<string, unknown> = {},
  timeoutMs = 5000,
): Promise<unknown> {
  const response = await fetch(`${service.http}/api/${method}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      authorization: `Bearer ${NET_API_TOKEN}`,
    },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const answer = await response.json();
  if (response.status !== 200) {
    throw new ApiCallError(method, response.status, answer);
  }
  return answer.result;
}

/** How many members a service's /healthz counts (undefined if no answer). */
export async function membersOf(
  service: Pick<NetService, "http">,
  timeoutMs = 1000,
): Promise<number | undefined> {
  try {
    const response = await fetch(`${service.http}/healthz`, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    return (await response.json()).members;
  } catch {
    return undefined;
  }
}

/** Whether every one of `services` counts `members` members. */
export async function allSeeMembers(
  services: readonly Pick<NetService, "http">[],
  members: number,
): Promise<boolean> {
  const counts = await Promise.all(services.map((s) => membersOf(s)));
  return counts.every((n) => n === members);
}

/** The value of one unlabelled sample of a service's /metrics. */
export async function metricOf(
  service: Pick<NetService, "http">,
  name: string,
): Promise<number> {
  const text = await (await fetch(`${service.http}/metrics`, {
    signal: AbortSignal.timeout(5000),
  })).text();
  const match = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  if (match === null) throw new Error(`no sample ${name} in /metrics`);
  return Number(match[1]);
}
