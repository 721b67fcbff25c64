// The command line of the register: `deno run -A register.ts`.

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

const SECRET: SecretFlag = {
  name: "secret",
  env: "WSGATE_SECRET",
  description: "shared secret that services must prove they know",
};

const COMMAND: CommandSpec = {
  name: "register",
  usage: "deno run -A register.ts [flags]",
  summary:
    "Runs the register of a wsgate cluster: the membership server that every service joins.",
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
      description: "plain HTTP port for /healthz and /metrics, 0 for any",
      defaultText: "off",
    },
    ...secretFlagSpecs(SECRET),
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
  let register: Register;
  try {
    const secret = await readSecretFlag(flags, SECRET);
    if (secret !== undefined) options.secret = secret;
    const tls = await readTlsFlags(flags);
    if (tls !== undefined) options.tls = tls;
    register = await startRegister(options);
  } catch (error) {
    const hostname = options.hostname ?? "127.0.0.1";
    return reportStartFailure(COMMAND.name, error, {
      rpc: {
        address: formatHostPort(hostname, options.port ?? 8101),
        flag: "port",
      },
      http: {
        address: formatHostPort(hostname, options.httpPort ?? 0),
        flag: "http-port",
      },
    });
  }
  const address = formatHostPort(register.hostname, register.port);
  console.log(`register listening on ${address}`);
  if (register.httpPort !== undefined) {
    const http = formatHostPort(register.hostname, register.httpPort);
    console.log(
      `register health on http://${http}/healthz, metrics on http://${http}/metrics`,
    );
  }
  await stop.stopped;
  await register.close();
  return 0;
}
