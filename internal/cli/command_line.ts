// A small command-line flag parser with environment fallbacks, and what the
// register's and the service's command lines share: help, exit codes,
// signals, TLS files and secrets read from files.

import { messageOf } from "../base/describe.ts";
import { ListenError, listenFailureText } from "../base/listen_error.ts";
import {
  envNeeds,
  refuseMissingPermissions,
  reportPermissionFailure,
} from "./permissions.ts";
import type { TlsOptions } from "../../tls.ts";

/** One flag of a command. */
export interface FlagSpec {
  /** `--name` on the command line. */
  readonly name: string;
  /** Environment variable read when the flag is absent. */
  readonly env?: string;
  /**
   * `port`: 0 to 65535; `port-or-off`: that or `off` (false); `integer`: 0
   * or more.
   */
  readonly kind: "string" | "port" | "port-or-off" | "integer" | "boolean";
  readonly description: string;
  /** Shown in the help; applied by the caller. */
  readonly defaultText?: string;
}

/** Parsed flag values by name. */
export type FlagValues = Record<string, string | number | boolean | undefined>;

/** A bad command line; the message says what to fix. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * Parses `args` (and the environment, through `readEnv`) against `specs`.
 */
export function parseFlags(
  args: readonly string[],
  specs: readonly FlagSpec[],
  readEnv: (variable: string) => string | undefined = (variable) =>
    Deno.env.get(variable),
): FlagValues {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const raw = new Map<string, string | true>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "-h") {
      raw.set("help", true);
      continue;
    }
    if (!arg.startsWith("--")) {
      throw new UsageError(`Cannot parse argument "${arg}": expected --flag`);
    }
    const eq = arg.indexOf("=");
    const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    const spec = byName.get(name);
    if (spec === undefined) {
      throw new UsageError(
        `Cannot parse flag "--${name}": unknown flag (see --help)`,
      );
    }
    if (spec.kind === "boolean") {
      raw.set(name, true);
    } else if (eq >= 0) {
      raw.set(name, arg.slice(eq + 1));
    } else {
      const value = args[++i];
      if (value === undefined) {
        throw new UsageError(`Cannot parse flag "--${name}": it needs a value`);
      }
      raw.set(name, value);
    }
  }
  const values: FlagValues = {};
  for (const spec of specs) {
    let value: string | true | undefined = raw.get(spec.name);
    let source = `--${spec.name}`;
    if (value === undefined && spec.env !== undefined) {
      value = readEnv(spec.env);
      source = `$${spec.env}`;
    }
    if (value === undefined) continue;
    switch (spec.kind) {
      case "boolean":
        values[spec.name] = value === true || value === "1" ||
          value === "true";
        break;
      case "port":
      case "port-or-off": {
        if (spec.kind === "port-or-off" && value === "off") {
          values[spec.name] = false;
          break;
        }
        const port = Number(value);
        if (
          value === true || !/^\d+$/.test(value) || port < 0 || port > 65535
        ) {
          throw new UsageError(
            `Cannot use ${source} "${value}": expected a port from 0 to 65535${
              spec.kind === "port-or-off" ? ", or off" : ""
            }`,
          );
        }
        values[spec.name] = port;
        break;
      }
      case "integer": {
        if (value === true || !/^\d+$/.test(value)) {
          throw new UsageError(
            `Cannot use ${source} "${value}": expected a whole number, 0 or more`,
          );
        }
        values[spec.name] = Number(value);
        break;
      }
      case "string":
        values[spec.name] = value === true ? "" : value;
    }
  }
  return values;
}

/** The help text for a command. */
export function helpText(
  usage: string,
  summary: string,
  specs: readonly FlagSpec[],
): string {
  const lines = [`Usage: ${usage}`, "", summary, "", "Flags:"];
  const left = (spec: FlagSpec) =>
    `  --${spec.name}${spec.kind === "boolean" ? "" : " VALUE"}`;
  const width = Math.max(...specs.map((spec) => left(spec).length)) + 2;
  for (const spec of specs) {
    let right = spec.description;
    if (spec.defaultText !== undefined) {
      right += ` (default ${spec.defaultText})`;
    }
    if (spec.env !== undefined) right += ` [env ${spec.env}]`;
    lines.push(`${left(spec).padEnd(width)}${right}`);
  }
  return lines.join("\n");
}

/** A command-line program: what its help and its error lines say. */
export interface CommandSpec {
  /** Starts each line it prints on stderr, e.g. `"register"`. */
  readonly name: string;
  /** The usage line of its help, e.g. `"deno run -A register.ts [flags]"`. */
  readonly usage: string;
  /** What it does, in a sentence. */
  readonly summary: string;
  /** Its flags; `--help` (and `-h`) comes with every command. */
  readonly flags: readonly FlagSpec[];
}

/**
 * The `--log-level` flag of a command that starts servers, read from `env`
 * too when given.
 */
export function logLevelFlag(defaultText: string, env?: string): FlagSpec {
  return {
    name: "log-level",
    ...(env === undefined ? {} : { env }),
    kind: "string",
    description: "error, warn, info or debug",
    defaultText,
  };
}

const HELP_FLAG: FlagSpec = {
  name: "help",
  kind: "boolean",
  description: "show this help",
};

/**
 * Reads the command line (and the environment) of `command`. With `--help`
 * it prints the help and exits with 0 (no permission needed); with a bad
 * flag or value, or without `--allow-env` for the variables of its flags,
 * it prints `<name>: <what is wrong>` on stderr and exits with 2.
 */
export function readCommandLine(command: CommandSpec): FlagValues {
  const specs = [...command.flags, HELP_FLAG];
  const parse = (readEnv?: (variable: string) => string | undefined) => {
    try {
      return parseFlags(Deno.args, specs, readEnv);
    } catch (error) {
      if (!(error instanceof UsageError)) throw error;
      console.error(`${command.name}: ${error.message}`);
      Deno.exit(2);
    }
  };
  if (parse(() => undefined).help === true) {
    console.log(helpText(command.usage, command.summary, specs));
    Deno.exit(0);
  }
  const variables = specs.flatMap((s) => s.env === undefined ? [] : [s.env]);
  const refused = refuseMissingPermissions(command.name, envNeeds(variables));
  if (refused !== undefined) Deno.exit(refused);
  return parse();
}

/**
 * Says on stderr why a command's servers did not start, as `<name>:
 * <reason>`. A server that could not listen is told as the library says
 * it, with the flag in place of the option (`--rpc-port` for `rpcPort`).
 * A missing permission names the `--allow-*` flag to add. Returns the
 * exit code: 2 for bad options (a TypeError or RangeError) or a missing
 * permission, else 1.
 */
export function reportStartFailure(name: string, error: unknown): number {
  const denied = reportPermissionFailure(name, error);
  if (denied !== undefined) return denied;
  const reason = error instanceof ListenError
    ? listenFailureText(error, (option) => `--${flagOf(option)}`)
    : messageOf(error);
  console.error(`${name}: ${reason}`);
  return error instanceof TypeError || error instanceof RangeError ? 2 : 1;
}

/** The flag of an option: `rpcPort` is `--rpc-port`. */
function flagOf(option: string): string {
  return option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** SIGINT and SIGTERM, as an AbortSignal, until disposed. */
export interface StopSignals extends Disposable {
  /** Aborts on the first SIGINT or SIGTERM. */
  readonly signal: AbortSignal;
  /** Resolves on the first SIGINT or SIGTERM. */
  readonly stopped: Promise<void>;
}

/**
 * Listens for SIGINT and SIGTERM. Call it before announcing readiness, so
 * that a signal sent right after the announcement is not missed.
 */
export function stopSignals(): StopSignals {
  const controller = new AbortController();
  const stop = () => controller.abort();
  const signals: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT"]
    : ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, stop);
  const stopped = new Promise<void>((resolve) =>
    controller.signal.addEventListener("abort", () => resolve(), {
      once: true,
    })
  );
  return {
    signal: controller.signal,
    stopped,
    [Symbol.dispose]() {
      for (const s of signals) Deno.removeSignalListener(s, stop);
    },
  };
}

/** The `--tls-*` flags of a command that serves and dials gRPC. */
export const TLS_FLAGS: readonly FlagSpec[] = [
  {
    name: "tls-cert",
    env: "WSGATE_TLS_CERT",
    kind: "string",
    description: "serve TLS with this certificate chain (PEM file)",
  },
  {
    name: "tls-key",
    env: "WSGATE_TLS_KEY",
    kind: "string",
    description: "private key of --tls-cert (PEM file)",
  },
  {
    name: "tls-ca",
    env: "WSGATE_TLS_CA",
    kind: "string",
    description: "certificate authorities to trust (PEM file)",
  },
  {
    name: "tls-mutual",
    env: "WSGATE_TLS_MUTUAL",
    kind: "boolean",
    description: "require client certificates signed by --tls-ca",
  },
];

/** The TLS options that the `--tls-*` flags name, read from their files. */
export async function readTlsFlags(
  flags: FlagValues,
): Promise<TlsOptions | undefined> {
  const certFile = flags["tls-cert"];
  const keyFile = flags["tls-key"];
  const caFile = flags["tls-ca"];
  const mutual = flags["tls-mutual"] === true;
  if (certFile === undefined && keyFile === undefined) {
    if (caFile !== undefined || mutual) {
      throw new TypeError(
        "Cannot use --tls-ca or --tls-mutual without --tls-cert and --tls-key",
      );
    }
    return undefined;
  }
  if (certFile === undefined || keyFile === undefined) {
    throw new TypeError("Cannot use TLS: give both --tls-cert and --tls-key");
  }
  const read = async (file: unknown, flag: string) => {
    try {
      return await Deno.readTextFile(String(file));
    } catch (error) {
      throw new TypeError(
        `Cannot read --${flag} "${String(file)}": ${messageOf(error)}`,
      );
    }
  };
  const tls: TlsOptions = {
    cert: await read(certFile, "tls-cert"),
    key: await read(keyFile, "tls-key"),
    mutual,
  };
  if (caFile !== undefined) tls.ca = await read(caFile, "tls-ca");
  return tls;
}

/**
 * A secret of a command line: the flag `--<name>` and its twin
 * `--<name>-file`, which names a file that holds it, so that it does not
 * show in `ps` (nor in the shell's history).
 */
export interface SecretFlag {
  /** The flag without `--`, e.g. `"secret"`. */
  readonly name: string;
  /** Its variable; the file's is this with `_FILE`. */
  readonly env: string;
  /** What the secret is, e.g. `"shared secret of the cluster"`. */
  readonly description: string;
}

/** The two flags of a secret, the file first (the one to prefer). */
export function secretFlagSpecs(secret: SecretFlag): FlagSpec[] {
  return [
    {
      name: `${secret.name}-file`,
      env: `${secret.env}_FILE`,
      kind: "string",
      description:
        `file that holds the ${secret.description} (one trailing newline dropped)`,
    },
    {
      name: secret.name,
      env: secret.env,
      kind: "string",
      description:
        `the ${secret.description}, on the command line (ps shows it; prefer --${secret.name}-file)`,
    },
  ];
}

/**
 * The value of a secret: from `--<name>-file` (the file's text without one
 * trailing newline), from `--<name>`, or undefined when neither is given.
 *
 * @throws {TypeError} when both are given (as flags or variables), or the
 * file cannot be read or holds nothing.
 */
export async function readSecretFlag(
  flags: FlagValues,
  secret: SecretFlag,
): Promise<string | undefined> {
  const { name, env } = secret;
  const value = flags[name];
  const file = flags[`${name}-file`];
  if (value !== undefined && file !== undefined) {
    throw new TypeError(
      `Cannot read the ${secret.description}: both --${name}-file and --${name} are given (as flags, or as $${env}_FILE and $${env}); give only one, preferably --${name}-file`,
    );
  }
  if (file === undefined) {
    return value === undefined ? undefined : String(value);
  }
  const path = String(file);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new TypeError(
      `Cannot read --${name}-file "${path}": ${messageOf(error)}`,
    );
  }
  const trimmed = text.endsWith("\r\n")
    ? text.slice(0, -2)
    : text.endsWith("\n")
    ? text.slice(0, -1)
    : text;
  if (trimmed === "") {
    throw new TypeError(
      `Cannot read --${name}-file "${path}": the file is empty; write the ${secret.description} into it`,
    );
  }
  return trimmed;
}
