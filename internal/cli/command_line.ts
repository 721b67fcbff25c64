// A small command-line flag parser with environment fallbacks, for the
// register and example entry points.

/** One flag of a command. */
export interface FlagSpec {
  /** `--name` on the command line. */
  readonly name: string;
  /** Environment variable read when the flag is absent. */
  readonly env?: string;
  readonly kind: "string" | "port" | "boolean";
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

/** Parses `args` (and the environment) against `specs`. */
export function parseFlags(
  args: readonly string[],
  specs: readonly FlagSpec[],
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
      value = Deno.env.get(spec.env);
      source = `$${spec.env}`;
    }
    if (value === undefined) continue;
    switch (spec.kind) {
      case "boolean":
        values[spec.name] = value === true || value === "1" ||
          value === "true";
        break;
      case "port": {
        const port = Number(value);
        if (
          value === true || !/^\d+$/.test(value) || port < 0 || port > 65535
        ) {
          throw new UsageError(
            `Cannot use ${source} "${value}": expected a port from 0 to 65535`,
          );
        }
        values[spec.name] = port;
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
  for (const spec of specs) {
    const left = `  --${spec.name}${spec.kind === "boolean" ? "" : " VALUE"}`;
    let right = spec.description;
    if (spec.defaultText !== undefined) {
      right += ` (default ${spec.defaultText})`;
    }
    if (spec.env !== undefined) right += ` [env ${spec.env}]`;
    lines.push(`${left.padEnd(26)}${right}`);
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
 * it prints the help and exits with 0; with a bad flag or value it prints
 * `<name>: <what is wrong>` on stderr and exits with 2.
 */
export function readCommandLine(command: CommandSpec): FlagValues {
  const specs = [...command.flags, HELP_FLAG];
  let flags: FlagValues;
  try {
    flags = parseFlags(Deno.args, specs);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`${command.name}: ${error.message}`);
    Deno.exit(2);
  }
  if (flags.help === true) {
    console.log(helpText(command.usage, command.summary, specs));
    Deno.exit(0);
  }
  return flags;
}

/** One server of a command, as its start failure names it. */
export interface Listener {
  /** Where it listens, e.g. `"127.0.0.1:8101"` or `"port 9201"`. */
  readonly address: string;
  /** The flag that moves it, without `--`. */
  readonly flag: string;
}

/**
 * Says on stderr why a command's servers did not start, as `<name>:
 * <reason>`, naming the flag that moves a port in use. Returns the exit
 * code: 2 for bad options (a TypeError or RangeError), else 1.
 */
export function reportStartFailure(
  name: string,
  error: unknown,
  listeners: { readonly rpc: Listener; readonly http: Listener },
): number {
  const taken = portInUse(error);
  const reason = taken === undefined
    ? error instanceof Error ? error.message : String(error)
    : `Cannot listen on ${
      listeners[taken].address
    }: the port is in use (pick another with --${listeners[taken].flag})`;
  console.error(`${name}: ${reason}`);
  return error instanceof TypeError || error instanceof RangeError ? 2 : 1;
}

/**
 * Which of our servers failed to listen because its port is taken: the
 * gRPC servers (node:http2) fail with code `EADDRINUSE`, the HTTP and
 * WebSocket servers (`Deno.serve`) with `Deno.errors.AddrInUse`.
 */
function portInUse(error: unknown): "rpc" | "http" | undefined {
  if (error instanceof Deno.errors.AddrInUse) return "http";
  if (
    error instanceof Error && "code" in error && error.code === "EADDRINUSE"
  ) {
    return "rpc";
  }
  return undefined;
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
