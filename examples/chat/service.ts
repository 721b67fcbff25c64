// One service of the chat: the WebSockets, the web page, and its share of
// the cluster. Run a register first (deno run -A register.ts), then one or
// more of these:
//
//   deno run -A examples/chat/service.ts --name A --port 9201 --rpc-port 9101
//   deno run -A examples/chat/service.ts --name B --port 9202 --rpc-port 9102
//
// `--help` lists the flags and their environment variables. It prints one
// line, "chat service <name> on http://host:port/ ...", once it has joined.

import { type ServiceOptions, startService } from "../../mod.ts";
import type { LogLevel } from "../../internal/base/logger.ts";
import {
  type CommandSpec,
  logLevelFlag,
  readCommandLine,
  reportStartFailure,
  stopSignals,
} from "../../internal/cli/command_line.ts";
import { createChatApp } from "./app.ts";
import { loadPublicFiles } from "./static.ts";

const COMMAND: CommandSpec = {
  name: "chat service",
  usage: "deno run -A examples/chat/service.ts [flags]",
  summary:
    "Runs one service of the wsgate chat demo: the chat page and its WebSockets on one port, gRPC to its peers on another.",
  flags: [
    {
      name: "register",
      env: "WSGATE_REGISTER",
      kind: "string",
      description: "register address(es), host:port, comma-separated",
      defaultText: "127.0.0.1:8101",
    },
    {
      name: "name",
      env: "WSGATE_SERVICE_NAME",
      kind: "string",
      description: "name shown to users, e.g. A",
      defaultText: "the node id",
    },
    {
      name: "hostname",
      env: "WSGATE_HOSTNAME",
      kind: "string",
      description: "address of the web and WebSocket server",
      defaultText: "0.0.0.0",
    },
    {
      name: "port",
      env: "WSGATE_PORT",
      kind: "port",
      description: "web and WebSocket port, 0 for any free port",
      defaultText: "9201",
    },
    {
      name: "rpc-port",
      env: "WSGATE_RPC_PORT",
      kind: "port",
      description: "gRPC port for peers and backends, 0 for any",
      defaultText: "9101",
    },
    {
      name: "delivery-port",
      env: "WSGATE_DELIVERY_PORT",
      kind: "port",
      description: "TCP port peers deliver batches to, 0 for any free port",
      defaultText: "0",
    },
    {
      name: "lan-ip",
      env: "WSGATE_LAN_IP",
      kind: "string",
      description: "address peers dial to reach the gRPC port",
      defaultText: "127.0.0.1",
    },
    {
      name: "rpc-hostname",
      env: "WSGATE_RPC_HOSTNAME",
      kind: "string",
      description: "address the gRPC server listens on",
      defaultText: "the lan ip",
    },
    {
      name: "secret",
      env: "WSGATE_SECRET",
      kind: "string",
      description: "shared secret of the cluster",
    },
    {
      name: "http-api-secret",
      env: "WSGATE_HTTP_API_SECRET",
      kind: "string",
      description: "turns on POST /api/<method> with this bearer token",
    },
    logLevelFlag("info", "WSGATE_LOG_LEVEL"),
  ],
};

async function main(): Promise<number> {
  const flags = readCommandLine(COMMAND);
  using stop = stopSignals();
  const name = flags.name === undefined ? undefined : String(flags.name);
  const options: ServiceOptions = {
    register: String(flags.register ?? "127.0.0.1:8101").split(",")
      .map((r) => r.trim()).filter((r) => r.length > 0),
    signal: stop.signal,
    fetch: await loadPublicFiles(),
  };
  if (flags.hostname !== undefined) options.hostname = String(flags.hostname);
  if (flags.port !== undefined) options.port = Number(flags.port);
  if (flags["rpc-port"] !== undefined) {
    options.rpcPort = Number(flags["rpc-port"]);
  }
  if (flags["delivery-port"] !== undefined) {
    options.deliveryPort = Number(flags["delivery-port"]);
  }
  if (flags["lan-ip"] !== undefined) options.lanIp = String(flags["lan-ip"]);
  if (flags["rpc-hostname"] !== undefined) {
    options.rpcHostname = String(flags["rpc-hostname"]);
  }
  if (flags.secret !== undefined) options.secret = String(flags.secret);
  if (flags["http-api-secret"] !== undefined) {
    options.httpApiSecret = String(flags["http-api-secret"]);
  }
  if (flags["log-level"] !== undefined) {
    options.logLevel = String(flags["log-level"]) as LogLevel;
  }

  let service;
  try {
    service = await startService(
      createChatApp(name === undefined ? {} : { name }),
      options,
    );
  } catch (error) {
    return reportStartFailure(COMMAND.name, error, {
      http: { address: `port ${options.port ?? 9201}`, flag: "port" },
      rpc: { address: `port ${options.rpcPort ?? 9101}`, flag: "rpc-port" },
    });
  }
  const host = service.hostname === "0.0.0.0" || service.hostname === "::"
    ? "127.0.0.1"
    : service.hostname;
  console.log(
    `chat service ${
      name ?? service.nodeId
    } on http://${host}:${service.port}/ (node ${service.nodeId}, rpc ${service.rpcAddress})`,
  );
  await stop.stopped;
  await service.close();
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main());
}
