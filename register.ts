/**
 * The register: the membership server of a gateway cluster. Every service
 * keeps a stream open to it and gets the member list pushed on every change.
 *
 * Run it with `deno run -A register.ts [--hostname H] [--port P] [--secret S]`
 * or start it from code with {@linkcode startRegister}.
 *
 * @module
 */

import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  MemberListSchema,
  RegisterService,
} from "./proto/gen/websocket/v1/register_pb.ts";
import { GatewayError } from "./errors.ts";
import { isNodeId } from "./internal/client_id.ts";
import {
  formatHostPort,
  isLoopback,
  parseHostPort,
} from "./internal/address.ts";
import { type MemberList, MemberRegistry } from "./internal/member_registry.ts";
import { listenRpc } from "./internal/rpc_server.ts";
import { createLogger, type LogLevel } from "./internal/logger.ts";
import {
  checkLogLevel,
  checkPort,
  checkPositive,
  checkSecret,
  onAbort,
} from "./internal/options.ts";
import { helpText, parseFlags, UsageError } from "./internal/cli.ts";

/** Options of {@linkcode startRegister}. */
export interface RegisterOptions {
  /**
   * Address to listen on. Use `"0.0.0.0"` when services on other hosts join.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * Port to listen on; 0 picks a free one ({@linkcode Register.port} tells).
   *
   * @default {8101}
   */
  port?: number;
  /**
   * Shared secret: services must present it to join. Unset means no check.
   */
  secret?: string;
  /** Closes the register when aborted. */
  signal?: AbortSignal;
  /**
   * How often an idle Join stream carries a heartbeat, in milliseconds.
   *
   * @default {1000}
   */
  heartbeatMs?: number;
  /**
   * The register pings each service's connection this often, in
   * milliseconds, and drops a service that does not answer within
   * `2 × pingIntervalMs`. 0 turns pings off.
   *
   * @default {1000}
   */
  pingIntervalMs?: number;
  /**
   * How much to log on stderr.
   *
   * @default {"info"}
   */
  logLevel?: LogLevel;
}

/** A running register, from {@linkcode startRegister}. */
export interface Register extends AsyncDisposable {
  /** The address it listens on. */
  readonly hostname: string;
  /** The port it listens on. */
  readonly port: number;
  /** Stops the register: ends every Join stream, then closes the port. */
  close(): Promise<void>;
}

/**
 * Starts a register.
 *
 * @example Starting a register on a free port
 * ```ts
 * import assert from "node:assert/strict";
 * import { startRegister } from "./register.ts";
 *
 * await using register = await startRegister({ hostname: "127.0.0.1", port: 0 });
 * assert.ok(register.port > 0);
 * ```
 *
 * @param options Where to listen, the secret, and a signal to stop it.
 * @returns The running register, once it listens.
 */
export async function startRegister(
  options: RegisterOptions = {},
): Promise<Register> {
  const {
    hostname = "127.0.0.1",
    port = 8101,
    signal,
    heartbeatMs = 1000,
    pingIntervalMs = 1000,
    logLevel = "info",
  } = options;
  checkPort("port", port);
  checkPositive("heartbeatMs", heartbeatMs);
  if (pingIntervalMs !== 0) checkPositive("pingIntervalMs", pingIntervalMs);
  const secret = checkSecret(options.secret);
  const logger = createLogger("register", checkLogLevel(logLevel));
  signal?.throwIfAborted();

  const registry = new MemberRegistry({ heartbeatMs, logger });
  const server = await listenRpc({
    hostname,
    port,
    secret,
    pingIntervalMs,
    pingTimeoutMs: 2 * pingIntervalMs,
    logger,
    routes: (router) =>
      router.service(RegisterService, createRegisterHandler(registry)),
  });
  if (secret === undefined && !isLoopback(hostname)) {
    logger.warn(
      "register listens beyond loopback without a secret: any host that reaches it can join the cluster; set a secret",
      { hostname },
    );
  }
  logger.debug("register listening", { hostname, port: server.port });

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      stopWatching();
      registry.close();
      await server.close();
    })();
    return closing;
  };
  const stopWatching = onAbort(signal, close);
  return {
    hostname,
    port: server.port,
    close,
    [Symbol.asyncDispose]: close,
  };
}

function createRegisterHandler(
  registry: MemberRegistry,
): ServiceImpl<typeof RegisterService> {
  return {
    async *join(request, context) {
      const member = request.member;
      if (member === undefined || !isNodeId(member.nodeId)) {
        throw new GatewayError(
          "invalid_argument",
          "Cannot join: member.node_id must be a node id made by a gateway service",
        );
      }
      parseHostPort(member.rpcAddress, "member.rpc_address");
      const joined = { nodeId: member.nodeId, rpcAddress: member.rpcAddress };
      for await (const event of registry.join(joined, context.signal)) {
        yield event.kind === "members"
          ? { event: { case: "members", value: toProto(event.list) } }
          : { event: { case: "heartbeat", value: {} } };
      }
    },
    listMembers() {
      return { members: toProto(registry.list()) };
    },
  };
}

function toProto(list: MemberList) {
  return create(MemberListSchema, {
    registerId: list.registerId,
    version: list.version,
    members: list.members.map((m) => ({ ...m })),
  });
}

const FLAGS = [
  {
    name: "hostname",
    env: "WSGATE_REGISTER_HOSTNAME",
    kind: "string",
    description: "address to listen on",
    defaultText: "127.0.0.1",
  },
  {
    name: "port",
    env: "WSGATE_REGISTER_PORT",
    kind: "port",
    description: "port to listen on, 0 for any free port",
    defaultText: "8101",
  },
  {
    name: "secret",
    env: "WSGATE_SECRET",
    kind: "string",
    description: "shared secret that services must present",
  },
  {
    name: "log-level",
    env: "WSGATE_LOG_LEVEL",
    kind: "string",
    description: "error, warn, info or debug",
    defaultText: "info",
  },
  { name: "help", kind: "boolean", description: "show this help" },
] as const;

async function main(): Promise<void> {
  let flags;
  try {
    flags = parseFlags(Deno.args, FLAGS);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`register: ${error.message}`);
    Deno.exit(2);
  }
  if (flags.help === true) {
    console.log(helpText(
      "deno run -A register.ts [flags]",
      "Runs the register of a wsgate cluster: the membership server that every service joins.",
      FLAGS,
    ));
    return;
  }
  const controller = new AbortController();
  const options: RegisterOptions = { signal: controller.signal };
  if (flags.hostname !== undefined) options.hostname = String(flags.hostname);
  if (flags.port !== undefined) options.port = Number(flags.port);
  if (flags.secret !== undefined) options.secret = String(flags.secret);
  if (flags["log-level"] !== undefined) {
    options.logLevel = String(flags["log-level"]) as LogLevel;
  }
  let register: Register;
  try {
    register = await startRegister(options);
  } catch (error) {
    console.error(`register: ${startFailure(error, options)}`);
    Deno.exit(1);
  }
  // Listen for signals before saying where it listens: whoever reads that
  // line may stop it at once.
  const stop = () => controller.abort();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  console.log(
    `register listening on ${formatHostPort(register.hostname, register.port)}`,
  );
  await new Promise((resolve) =>
    controller.signal.addEventListener("abort", resolve, { once: true })
  );
  await register.close();
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
}

function startFailure(error: unknown, options: RegisterOptions): string {
  if (
    error instanceof Error && "code" in error && error.code === "EADDRINUSE"
  ) {
    return `Cannot listen on ${options.hostname ?? "127.0.0.1"}:${
      options.port ?? 8101
    }: the port is in use (pick another with --port)`;
  }
  return error instanceof Error ? error.message : String(error);
}

if (import.meta.main) {
  await main();
}
