// The command line of a service: `deno task service --app ./app.ts`
// (docs/permissions.md has its `deno run` flags).
// It loads the application module, starts the service with the options
// its flags (or environment variables) give, prints one line once the
// service has joined, closes it gracefully on SIGINT or SIGTERM, and
// prints one more line once it has stopped. On SIGHUP it imports the
// module again and reloads the service with it (docs/hot_reload.md).

import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { Application, RateLimit } from "../../application.ts";
import {
  type CommandSpec,
  type FlagSpec,
  type FlagValues,
  logLevelFlag,
  readCommandLine,
  readSecretFlag,
  readTlsFlags,
  reportStartFailure,
  type SecretFlag,
  secretFlagSpecs,
  stopSignals,
  TLS_FLAGS,
  UsageError,
} from "../cli/command_line.ts";
import {
  dialNeed,
  explainPermissionError,
  fileNeeds,
  listenNeed,
  moduleNeed,
  type Need,
  refuseMissingPermissions,
} from "../cli/permissions.ts";
import { createLogger, type Logger, type LogLevel } from "../base/logger.ts";
import { describe, messageOf } from "../base/describe.ts";
import { SERVICE_DEFAULTS, type ServiceOptions } from "./service_options.ts";
import { type Service, startService } from "./start_service.ts";
import { upgradeRequired } from "./service_handler.ts";
import { GatewayError } from "../../errors.ts";

/** The options that take a whole number, by flag. */
const NUMBER_FLAGS = [
  ["deadline-ms", "deadlineMs", "the longest a call to a peer may take"],
  [
    "join-timeout-ms",
    "joinTimeoutMs",
    "how long to wait to join a register before exiting with 1",
  ],
  [
    "ping-interval-ms",
    "pingIntervalMs",
    "keepalive pings to registers and peers",
  ],
  ["idle-timeout-ms", "idleTimeoutMs", "client heartbeat, 0 for none"],
  [
    "max-peer-queue-bytes",
    "maxPeerQueueBytes",
    "bytes that may wait for one peer",
  ],
  [
    "max-buffered-bytes",
    "maxBufferedBytes",
    "bytes that may wait for one client",
  ],
  [
    "max-message-bytes",
    "maxMessageBytes",
    "the largest message a client may send",
  ],
  ["max-send-bytes", "maxSendBytes", "the largest message the Api sends"],
  [
    "max-queued-messages",
    "maxQueuedMessages",
    "messages of one client that may wait for onMessage",
  ],
  [
    "header-timeout-ms",
    "headerTimeoutMs",
    "the longest a connection may take to send its request",
  ],
  [
    "max-pending-connections",
    "maxPendingConnections",
    "connections still sending their request, at most",
  ],
  ["max-info-keys", "maxInfoKeys", "keys of one client's info map"],
  ["max-info-bytes", "maxInfoBytes", "bytes of one client's info map"],
  [
    "shutdown-timeout-ms",
    "shutdownTimeoutMs",
    "the longest a graceful close waits",
  ],
  [
    "hello-timeout-ms",
    "helloTimeoutMs",
    "the longest a wsgate.v1 client may take to send its hello",
  ],
] as const satisfies readonly (readonly [
  string,
  keyof typeof SERVICE_DEFAULTS & keyof ServiceOptions,
  string,
])[];

/** `--rate-limit`: `"<messagesPerSecond>/<burst>"`, or `"off"`. */
function parseRateLimit(text: string): RateLimit | false {
  if (text === "off") return false;
  const match = /^(\d+(?:\.\d+)?)\/(\d+)$/.exec(text);
  if (match === null) {
    throw new UsageError(
      `--rate-limit must be <messages a second>/<burst>, such as 100/200, or off: current value is ${
        JSON.stringify(text)
      }`,
    );
  }
  return { messagesPerSecond: Number(match[1]), burst: Number(match[2]) };
}

/** `--max-send-bytes` is read from `$WSGATE_MAX_SEND_BYTES`, and so on. */
function envOf(flag: string): string {
  return `WSGATE_${flag.toUpperCase().replaceAll("-", "_")}`;
}

function flag(
  name: string,
  kind: FlagSpec["kind"],
  description: string,
  defaultText?: string | number,
): FlagSpec {
  return {
    name,
    env: envOf(name),
    kind,
    description,
    ...(defaultText === undefined ? {} : { defaultText: String(defaultText) }),
  };
}

const d = SERVICE_DEFAULTS;

const SECRET: SecretFlag = {
  name: "secret",
  env: envOf("secret"),
  description: "shared secret of the cluster",
};

const HTTP_API_SECRET: SecretFlag = {
  name: "http-api-secret",
  env: envOf("http-api-secret"),
  description: "bearer token that turns on POST /api/<method>",
};

const COMMAND: CommandSpec = {
  name: "service",
  usage:
    "deno run --allow-net=ADDRESSES --allow-env=WSGATE_* --allow-read=MODULE[,FILES] service.ts --app MODULE [flags]",
  summary:
    "Runs one service of a wsgate cluster: client WebSockets on one port, gRPC to its peers and backends on another. MODULE's default export is the Application; it may also export `fetch`, which answers the other HTTP requests of the WebSocket port. SIGHUP imports MODULE again and swaps it in without dropping a client (docs/hot_reload.md). It needs --allow-net for the addresses it listens on, its registers and its peers, --allow-env=WSGATE_*, and --allow-read for MODULE and the files its flags name (docs/permissions.md).",
  flags: [
    flag("app", "string", "the application module (a path or a URL)"),
    flag(
      "register",
      "string",
      "register address(es), host:port, comma-separated",
      d.register,
    ),
    {
      ...flag("name", "string", "what people call this service", "the node id"),
      env: "WSGATE_SERVICE_NAME",
    },
    flag("hostname", "string", "address of the WebSocket server", d.hostname),
    flag("port", "port", "WebSocket port, 0 for any free port", d.port),
    flag(
      "rpc-port",
      "port",
      "gRPC port for peers and backends, 0 for any",
      d.rpcPort,
    ),
    flag(
      "delivery-port",
      "port-or-off",
      "TCP port peers deliver batches to, 0 for any, off for none",
      d.deliveryPort,
    ),
    flag(
      "lan-ip",
      "string",
      "address peers dial to reach this service",
      d.lanIp,
    ),
    flag(
      "rpc-hostname",
      "string",
      "address the gRPC server listens on",
      "the lan ip",
    ),
    ...secretFlagSpecs(SECRET),
    ...TLS_FLAGS,
    ...secretFlagSpecs(HTTP_API_SECRET),
    flag(
      "allowed-origins",
      "string",
      "browser origins that may connect, comma-separated",
      "any",
    ),
    flag(
      "rate-limit",
      "string",
      "messages a second per client and the burst, or off",
      `${d.rateLimit.messagesPerSecond}/${d.rateLimit.burst}`,
    ),
    flag(
      "holder-routing",
      "string",
      "on: uid and group traffic only to the services that hold them (docs/holder_routing.md); off: to every service",
      "on",
    ),
    ...NUMBER_FLAGS.map(([name, option, description]) =>
      flag(name, "integer", description, d[option])
    ),
    flag(
      "recovery-window-ms",
      "integer",
      "how long the session of a wsgate.v1 client whose connection broke is kept",
      d.recovery.windowMs,
    ),
    flag(
      "recovery-max-bytes",
      "integer",
      "bytes one such session keeps for its client",
      d.recovery.maxBytes,
    ),
    flag(
      "no-recovery",
      "boolean",
      "keep no sessions: wsgate.v1 clients never recover",
    ),
    logLevelFlag(d.logLevel, "WSGATE_LOG_LEVEL"),
  ],
};

/** What an application module gives the service. */
interface AppModule {
  readonly app: Application;
  readonly fetch: ServiceOptions["fetch"];
}

/**
 * Imports the application module: a path (relative to the working
 * directory) or a URL. Its default export is the Application; an optional
 * `fetch` export becomes {@linkcode ServiceOptions.fetch}.
 */
async function loadApp(
  specifier: string,
  reload?: number,
): Promise<AppModule> {
  const url = /^[a-z][a-z0-9+.-]+:/i.test(specifier)
    ? specifier
    : pathToFileURL(resolve(specifier)).href;
  let module: Record<string, unknown>;
  try {
    // Another URL is another module: evaluated afresh (its own imports
    // stay as they were: they resolve to the URLs they had).
    module = await import(
      reload === undefined
        ? url
        : `${url}${url.includes("?") ? "&" : "?"}reload=${reload}`
    );
  } catch (error) {
    // A module it imports (that this command line does not) may need
    // --allow-read too: name the folder.
    const denied = explainPermissionError(error, { folder: true });
    throw new UsageError(
      `Cannot load --app "${specifier}": ${denied ?? messageOf(error)}`,
    );
  }
  const app = module.default;
  if (typeof app !== "object" || app === null || Array.isArray(app)) {
    throw new UsageError(
      `Cannot use --app "${specifier}": its default export must be the Application (an object of hooks): current value is ${
        describe(app)
      }`,
    );
  }
  const fetch = module.fetch;
  if (fetch !== undefined && typeof fetch !== "function") {
    throw new UsageError(
      `Cannot use --app "${specifier}": its "fetch" export must be a function (request) => Response: current value is ${
        describe(fetch)
      }`,
    );
  }
  return {
    app: app as Application,
    fetch: fetch as ServiceOptions["fetch"],
  };
}

/** The start options that the flags give. */
async function optionsOf(
  flags: FlagValues,
  signal: AbortSignal,
): Promise<ServiceOptions> {
  const list = (value: unknown) =>
    String(value).split(",").map((s) => s.trim()).filter((s) => s !== "");
  const options: ServiceOptions = {
    register: list(flags.register ?? d.register),
    signal,
  };
  const text = (name: string) =>
    flags[name] === undefined ? undefined : String(flags[name]);
  const name = text("name");
  if (name !== undefined) options.name = name;
  const hostname = text("hostname");
  if (hostname !== undefined) options.hostname = hostname;
  if (flags.port !== undefined) options.port = Number(flags.port);
  if (flags["rpc-port"] !== undefined) {
    options.rpcPort = Number(flags["rpc-port"]);
  }
  const deliveryPort = flags["delivery-port"];
  if (deliveryPort !== undefined) {
    options.deliveryPort = deliveryPort === false
      ? false
      : Number(deliveryPort);
  }
  const lanIp = text("lan-ip");
  if (lanIp !== undefined) options.lanIp = lanIp;
  const rpcHostname = text("rpc-hostname");
  if (rpcHostname !== undefined) options.rpcHostname = rpcHostname;
  const secret = await readSecretFlag(flags, SECRET);
  if (secret !== undefined) options.secret = secret;
  const tls = await readTlsFlags(flags);
  if (tls !== undefined) options.tls = tls;
  const httpApiSecret = await readSecretFlag(flags, HTTP_API_SECRET);
  if (httpApiSecret !== undefined) options.httpApiSecret = httpApiSecret;
  if (flags["allowed-origins"] !== undefined) {
    options.allowedOrigins = list(flags["allowed-origins"]);
  }
  const rateLimit = text("rate-limit");
  if (rateLimit !== undefined) options.rateLimit = parseRateLimit(rateLimit);
  const holderRouting = text("holder-routing");
  if (holderRouting !== undefined) {
    if (holderRouting !== "on" && holderRouting !== "off") {
      throw new UsageError(
        `--holder-routing must be on or off: current value is "${holderRouting}"`,
      );
    }
    options.holderRouting = holderRouting === "on";
  }
  for (const [flagName, option] of NUMBER_FLAGS) {
    if (flags[flagName] !== undefined) {
      options[option] = Number(flags[flagName]);
    }
  }
  const logLevel = text("log-level");
  if (logLevel !== undefined) options.logLevel = logLevel as LogLevel;
  const recovery = recoveryOf(flags);
  if (recovery !== undefined) options.recovery = recovery;
  return options;
}

/** `recovery` from `--no-recovery` and `--recovery-*`; undefined: default. */
function recoveryOf(flags: FlagValues): ServiceOptions["recovery"] {
  const windowMs = flags["recovery-window-ms"];
  const maxBytes = flags["recovery-max-bytes"];
  if (flags["no-recovery"] === true) {
    if (windowMs !== undefined || maxBytes !== undefined) {
      throw new UsageError(
        "Cannot start: --no-recovery turns sessions off; drop it or the --recovery-* flags",
      );
    }
    return false;
  }
  if (windowMs === undefined && maxBytes === undefined) return undefined;
  return {
    ...(windowMs === undefined ? {} : { windowMs: Number(windowMs) }),
    ...(maxBytes === undefined ? {} : { maxBytes: Number(maxBytes) }),
  };
}

/**
 * What the flags make the service do at start that needs a permission:
 * read the app module and the files the flags name, listen, dial the
 * registers (see docs/permissions.md; peers are dialed later).
 */
function needsOf(flags: FlagValues): Need[] {
  const app = String(flags.app);
  const appPath = !/^[a-z][a-z0-9+.-]+:/i.test(app)
    ? resolve(app)
    : app.startsWith("file:")
    ? fileURLToPath(app)
    : undefined;
  const rpcHost = String(flags["rpc-hostname"] ?? flags["lan-ip"] ?? d.lanIp);
  const delivery = flags["delivery-port"];
  const registers = String(flags.register ?? d.register).split(",")
    .map((s) => s.trim()).filter((s) => s !== "");
  return [
    ...(appPath === undefined ? [] : [moduleNeed(appPath, "--app")]),
    ...fileNeeds(flags, COMMAND.flags),
    listenNeed(
      String(flags.hostname ?? d.hostname),
      Number(flags.port ?? d.port),
    ),
    listenNeed(rpcHost, Number(flags["rpc-port"] ?? d.rpcPort)),
    ...(delivery === false || flags["tls-mutual"] === true
      ? []
      : [listenNeed(rpcHost, Number(delivery ?? d.deliveryPort))]),
    ...registers.map((address) => dialNeed(address, "the register")),
  ];
}

/**
 * Runs the command line; resolves with the exit code: 0 after a clean stop
 * on SIGINT or SIGTERM, 2 for a bad flag or application module, 1 when the
 * service cannot start (a port in use, say).
 */
export async function main(): Promise<number> {
  const flags = readCommandLine(COMMAND);
  using stop = stopSignals();
  let options: ServiceOptions;
  let module: AppModule;
  try {
    if (flags.app === undefined || flags.app === "") {
      throw new UsageError(
        "Cannot start: --app is required: give the module whose default export is the Application (see --help)",
      );
    }
    const refused = refuseMissingPermissions(COMMAND.name, needsOf(flags));
    if (refused !== undefined) return refused;
    module = await loadApp(String(flags.app));
    options = await optionsOf(flags, stop.signal);
  } catch (error) {
    if (!(error instanceof UsageError || error instanceof TypeError)) {
      throw error;
    }
    console.error(`${COMMAND.name}: ${error.message}`);
    return 2;
  }
  const running = { module };
  // Through `running`, so that a reload swaps the fetch export too.
  options.fetch = (request) =>
    running.module.fetch?.(request) ?? upgradeRequired();
  let service;
  try {
    service = await startService(module.app, options);
  } catch (error) {
    return reportStartFailure(COMMAND.name, error);
  }
  using _hangups = reloadOnHangup(String(flags.app), service, running, {
    logger: createLogger(
      `service ${service.name}`,
      options.logLevel ?? d.logLevel,
    ),
    stopping: stop.signal,
  });
  const host = service.hostname === "0.0.0.0" || service.hostname === "::"
    ? "127.0.0.1"
    : service.hostname;
  const delivery = service.deliveryPort === undefined
    ? ""
    : `, delivery port ${service.deliveryPort}`;
  console.log(
    `service ${service.name} on http://${host}:${service.port}/ (node ${service.nodeId}, rpc ${service.rpcAddress}${delivery})`,
  );
  await stop.stopped;
  await service.close();
  console.log(`service ${service.name} stopped`);
  return 0;
}

/** What {@linkcode reloadOnHangup} works with. */
interface HangupOptions {
  /** Where the failures go (a success is logged by the service). */
  readonly logger: Logger;
  /** Aborted when the service begins to stop: no reload from then on. */
  readonly stopping: AbortSignal;
}

/**
 * Until disposed, reloads `service` on SIGHUP with the module `specifier`
 * imported afresh, and puts that module in `running`. Hangups that come
 * during a reload make one more reload after it. A module that fails to
 * load, has no Application, or whose Application the service refuses
 * leaves the running one in place, with one line that says why.
 */
function reloadOnHangup(
  specifier: string,
  service: Service,
  running: { module: AppModule },
  options: HangupOptions,
): Disposable {
  if (Deno.build.os === "windows") return { [Symbol.dispose]() {} };
  const { logger, stopping } = options;
  let imports = 0;
  let busy = false;
  let again = false;
  async function reload(): Promise<void> {
    let module: AppModule;
    try {
      module = await loadApp(specifier, ++imports);
      if (stopping.aborted) return;
      await service.reload(module.app);
    } catch (error) {
      // A failed onStart is logged by the service already.
      if (
        !stopping.aborted &&
        (error instanceof UsageError || error instanceof GatewayError)
      ) {
        logger.error("reload failed; the running application stays", {
          reason: oneLine(error.message),
        });
      }
      return;
    }
    running.module = module;
  }
  async function onHangup(): Promise<void> {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    do {
      again = false;
      await reload();
    } while (again && !stopping.aborted);
    busy = false;
  }
  const listener = () => void onHangup();
  Deno.addSignalListener("SIGHUP", listener);
  return {
    [Symbol.dispose]() {
      Deno.removeSignalListener("SIGHUP", listener);
    },
  };
}

/**
 * An error message on one line: its first line, and where it points when a
 * later line says (a syntax error names the file and position there).
 */
function oneLine(message: string): string {
  const lines = message.split("\n").map((line) => line.trim())
    .filter((line) => line !== "");
  const at = lines.slice(1).find((line) => line.startsWith("at "));
  return [lines[0] ?? "", ...(at === undefined ? [] : [`(${at})`])].join(" ");
}
