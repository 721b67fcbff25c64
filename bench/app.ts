// The bench app: one service that speaks the app protocol of the peer
// benchmark harness (/work/shared/bench/README.md, "The bench app protocol"):
//
//   - on connect: the first text message is `id:<clientId>`;
//   - a binary frame whose byte 0 is 'B' (0x42) goes unchanged to every
//     client of the cluster: `api.sendToAll(frame)`;
//   - a binary frame whose byte 0 is 'P' (0x50), byte 1 = L and bytes
//     2 .. 2+L the target clientId (UTF-8) goes unchanged to that client,
//     wherever it lives: `api.sendToClient(target, frame)`;
//   - anything else is ignored, but for two text commands of our own
//     benchmark (bench/load.ts): `count` answers `count:<n>` from
//     `api.getAllClientCount()`, and `stats` answers `stats:<json>` with this
//     process's RPC counters (internal/rpc_counters.ts).
//
// One process (no wrapper), so the harness can sample its CPU by PID:
//
//   deno run -A register.ts --port 18730
//   deno run -A bench/app.ts --register 127.0.0.1:18730 --port 18721 --rpc-port 18731
//
// It prints one line once it has joined the register and exits on SIGINT or
// SIGTERM (so `deno run --cpu-prof` writes its profile).

import { type Api, type Application, startService } from "../mod.ts";
import { rpcCounters } from "../internal/ops/rpc_counters.ts";
import {
  type CommandSpec,
  logLevelFlag,
  readCommandLine,
  stopSignals,
} from "../internal/cli/command_line.ts";
import type { LogLevel } from "../internal/base/logger.ts";

const OP_BROADCAST = 0x42;
const OP_POINT_TO_POINT = 0x50;
const decoder = new TextDecoder();

/**
 * Ignores a failed send: the load generator counts what arrives, and a
 * failure (a peer gone, too much queued) shows up there as a missing
 * delivery.
 */
function ignore(): void {}

/** The bench app protocol on the cluster Api. Sends are not awaited. */
export const benchApp: Application = {
  onConnect(clientId, { api }) {
    api.sendToClient(clientId, `id:${clientId}`).catch(ignore);
  },
  onMessage(clientId, message, { api }) {
    if (typeof message === "string") {
      command(clientId, message, api);
      return;
    }
    if (message.length < 2) return;
    const op = message[0];
    if (op === OP_BROADCAST) {
      api.sendToAll(message).catch(ignore);
    } else if (op === OP_POINT_TO_POINT) {
      const target = decoder.decode(message.subarray(2, 2 + message[1]!));
      api.sendToClient(target, message).catch(ignore);
    }
  },
};

function command(clientId: string, text: string, api: Api): void {
  if (text === "count") {
    api.getAllClientCount().then(
      (n) => api.sendToClient(clientId, `count:${n}`),
      (error) => api.sendToClient(clientId, `count:error ${error}`),
    ).catch(ignore);
  } else if (text === "stats") {
    api.sendToClient(clientId, `stats:${JSON.stringify(rpcCounters)}`)
      .catch(ignore);
  }
}

const COMMAND: CommandSpec = {
  name: "bench app",
  usage: "deno run -A bench/app.ts [flags]",
  summary: "A wsgate service that speaks the peer benchmark's app protocol.",
  flags: [
    {
      name: "register",
      kind: "string",
      description: "host:port of the register",
      defaultText: "127.0.0.1:8101",
    },
    {
      name: "hostname",
      kind: "string",
      description: "address the WebSocket server listens on",
      defaultText: "127.0.0.1",
    },
    {
      name: "port",
      kind: "port",
      description: "WebSocket port",
      defaultText: "9201",
    },
    {
      name: "rpc-port",
      kind: "port",
      description: "gRPC port",
      defaultText: "9101",
    },
    logLevelFlag("warn"),
  ],
};

async function main(): Promise<void> {
  const flags = readCommandLine(COMMAND);
  using stop = stopSignals();
  const service = await startService(benchApp, {
    register: String(flags.register ?? "127.0.0.1:8101"),
    hostname: String(flags.hostname ?? "127.0.0.1"),
    port: Number(flags.port ?? 9201),
    rpcPort: Number(flags["rpc-port"] ?? 9101),
    logLevel: String(flags["log-level"] ?? "warn") as LogLevel,
    signal: stop.signal,
  });
  console.log(JSON.stringify({
    nodeId: service.nodeId,
    port: service.port,
    rpcAddress: service.rpcAddress,
    pid: Deno.pid,
  }));
  await stop.stopped;
  await service.close();
}

if (import.meta.main) {
  await main();
}
