// The command line of the register: `deno task register` (docs/permissions.md
// has its `deno run` flags).

import {
  type Register,
  type RegisterOptions,
  startRegister,
} from "./start_register.ts";
import { formatHostPort } from "../base/address.ts";
import type { LogLevel } from "../base/logger.ts";
import {
  type CommandSpec,
  logLevelFlag,
  readCommandLine,
  readSecretFlag,
  readTlsFlags,
  reportStartFailure,
  type SecretFlag,
  secretFlagSpecs,
  stopSignals,
  TLS_FLAGS,
} from "../cli/command_line.ts";
import {
  fileNeeds,
  listenNeed,
  refuseMissingPermissions,
} from "../cli/permissions.ts";

const SECRET: SecretFlag = {
  name: "secret",
  env: "WSGATE_SECRET",
  description: "shared secret that services must prove they know",
};

const DASHBOARD_TOKEN: SecretFlag = {
  name: "dashboard-token",
  env: "WSGATE_DASHBOARD_TOKEN",
  description:
    "token that the dashboard asks for (not the cluster secret; with a secret and no token, the dashboard is off)",
};

const COMMAND: CommandSpec = {
  name: "register",
  usage:
    "deno run --allow-net=HOST:PORT[,HOST:HTTP_PORT] --allow-env=WSGATE_* [--allow-read=FILES] register.ts [flags]",
  summary:
    "Runs the register of a wsgate cluster: the membership server that every service joins. It needs --allow-net for the addresses it listens on, --allow-env=WSGATE_*, and --allow-read for the files its flags name (docs/permissions.md).",
  flags: [
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
      description: "gRPC port that services join, 0 for any free port",
      defaultText: "8101",
    },
    {
      name: "http-port",
      env: "WSGATE_REGISTER_HTTP_PORT",
      kind: "port",
      description:
        "plain HTTP port for the dashboard (/), /healthz and /metrics, 0 for any",
      defaultText: "off",
    },
    ...secretFlagSpecs(SECRET),
    ...secretFlagSpecs(DASHBOARD_TOKEN),
    ...TLS_FLAGS,
    logLevelFlag("info", "WSGATE_LOG_LEVEL"),
  ],
};

/**
 * Runs the command line until SIGINT or SIGTERM; resolves with the exit
 * code (0 after a clean stop).
 */
export async function main(): Promise<number> {
  const flags = readCommandLine(COMMAND);
  using stop = stopSignals();
  const options: RegisterOptions = { signal: stop.signal };
  if (flags.hostname !== undefined) options.hostname = String(flags.hostname);
  if (flags.port !== undefined) options.port = Number(flags.port);
  if (flags["http-port"] !== undefined) {
    options.httpPort = Number(flags["http-port"]);
  }
  if (flags["log-level"] !== undefined) {
    options.logLevel = String(flags["log-level"]) as LogLevel;
  }
  const hostname = options.hostname ?? "127.0.0.1";
  const refused = refuseMissingPermissions(COMMAND.name, [
    listenNeed(hostname, options.port ?? 8101),
    ...(options.httpPort === undefined
      ? []
      : [listenNeed(hostname, options.httpPort)]),
    ...fileNeeds(flags, COMMAND.flags),
  ]);
  if (refused !== undefined) return refused;
  let register: Register;
  try {
    const secret = await readSecretFlag(flags, SECRET);
    if (secret !== undefined) options.secret = secret;
    const token = await readSecretFlag(flags, DASHBOARD_TOKEN);
    if (token !== undefined) options.dashboardToken = token;
    const tls = await readTlsFlags(flags);
    if (tls !== undefined) options.tls = tls;
    register = await startRegister(options);
  } catch (error) {
    return reportStartFailure(COMMAND.name, error);
  }
  const address = formatHostPort(register.hostname, register.port);
  console.log(`register listening on ${address}`);
  if (register.httpPort !== undefined) {
    const http = formatHostPort(register.hostname, register.httpPort);
    console.log(
      `register health on http://${http}/healthz, metrics on http://${http}/metrics`,
    );
    console.log(`register dashboard on http://${http}/`);
  }
  await stop.stopped;
  await register.close();
  return 0;
}
