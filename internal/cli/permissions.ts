// What a command line needs of Deno's permissions, checked before it
// starts anything, and the one line that names the flag to add when a
// permission is missing (docs/permissions.md has the flags per program).
//
// Why check first: node:http2 throws a missing --allow-net for a listen
// from a callback, out of reach of any try/catch, and a service denied the
// register's address would retry for ever. Querying needs no permission.

import { dirname } from "node:path";
import { formatHostPort } from "../base/address.ts";
import { messageOf } from "../base/describe.ts";

/** Where the flags are explained, at the end of every permission line. */
export const PERMISSIONS_DOC = "docs/permissions.md";

/** Something a command line is about to do that needs a permission. */
export type Need =
  | {
    readonly kind: "net";
    /** `host:port`, as `--allow-net` spells it (IPv6 in brackets). */
    readonly host: string;
    /** What it is for, e.g. `"listen on 0.0.0.0:9201"`. */
    readonly action: string;
  }
  | {
    readonly kind: "read";
    /** The file that is read. */
    readonly path: string;
    /** What to grant, when more than the file: its folder, say. */
    readonly grant?: string;
    readonly action: string;
  }
  | {
    readonly kind: "env";
    readonly variable: string;
    readonly action: string;
  };

/** A listen on `hostname:port`. */
export function listenNeed(hostname: string, port: number): Need {
  const host = formatHostPort(hostname, port);
  return { kind: "net", host, action: `listen on ${host}` };
}

/** A dial of `address` (`host:port`), to reach `what`. */
export function dialNeed(address: string, what: string): Need {
  return { kind: "net", host: address, action: `dial ${what} at ${address}` };
}

/** A file read, `what` naming it (e.g. `"--secret-file"`). */
export function readNeed(path: string, what: string): Need {
  return { kind: "read", path, action: `read ${what} "${path}"` };
}

/**
 * An import of the module at `path`: the grant to suggest is its folder,
 * since the modules it imports (that the command line did not) are read
 * too.
 */
export function moduleNeed(path: string, what: string): Need {
  return {
    kind: "read",
    path,
    grant: dirname(path),
    action: `read ${what} "${path}"`,
  };
}

/**
 * A read of the file that each flag of `specs` that names a file gives
 * (`--secret-file`, `--tls-cert`, ...), if it is given.
 */
export function fileNeeds(
  flags: Readonly<Record<string, unknown>>,
  specs: readonly { readonly name: string; readonly kind: string }[],
): Need[] {
  return specs.flatMap(({ name, kind }) =>
    kind === "string" && (name.endsWith("-file") || name.startsWith("tls-")) &&
      flags[name] !== undefined
      ? [readNeed(String(flags[name]), `--${name}`)]
      : []
  );
}

/** A read of each variable (the environment fallbacks of the flags). */
export function envNeeds(variables: readonly string[]): Need[] {
  return variables.map((variable) => ({
    kind: "env",
    variable,
    action: `read $${variable}`,
  }));
}

function granted(need: Need): boolean {
  const descriptor: Deno.PermissionDescriptor = need.kind === "net"
    ? { name: "net", host: need.host }
    : need.kind === "read"
    ? { name: "read", path: need.path }
    : { name: "env", variable: need.variable };
  return Deno.permissions.querySync(descriptor).state === "granted";
}

/** The needs of `needs` that this process has not been granted. */
export function missingPermissions(needs: readonly Need[]): Need[] {
  return needs.filter((need) => !granted(need));
}

/**
 * The `--allow-*` flags that grant `needs`, one per kind: addresses and
 * paths listed, variables that all start with `WSGATE_` as `WSGATE_*`.
 */
export function permissionFlags(needs: readonly Need[]): string[] {
  const net = new Set<string>();
  const read = new Set<string>();
  const env = new Set<string>();
  for (const need of needs) {
    if (need.kind === "net") net.add(need.host);
    else if (need.kind === "read") read.add(need.grant ?? need.path);
    else env.add(need.variable);
  }
  const flags: string[] = [];
  if (net.size > 0) flags.push(`--allow-net=${[...net].join(",")}`);
  if (read.size > 0) flags.push(`--allow-read=${[...read].join(",")}`);
  if (env.size > 0) {
    const all = [...env];
    flags.push(
      `--allow-env=${
        all.every((v) => v.startsWith("WSGATE_")) ? "WSGATE_*" : all.join(",")
      }`,
    );
  }
  return flags;
}

/**
 * The line that says what `missing` keeps the command `name` from doing
 * and which flags to add, e.g. `service: cannot listen on 0.0.0.0:9201:
 * Deno needs --allow-net=0.0.0.0:9201 (see docs/permissions.md)`.
 */
export function permissionMessage(
  name: string,
  missing: readonly Need[],
): string {
  const env = missing.filter((need) => need.kind === "env");
  const actions = [
    ...new Set(
      missing.filter((need) => need.kind !== "env").map((need) => need.action),
    ),
  ];
  if (env.length > 0) {
    // Without --allow-env every variable is missing: name the first only.
    actions.push(
      env.length === 1
        ? env[0]!.action
        : `${env[0]!.action} (nor the other variables of its flags)`,
    );
  }
  return `${name}: cannot ${actions.join(", ")}: Deno needs ${
    permissionFlags(missing).join(" ")
  } (see ${PERMISSIONS_DOC})`;
}

/**
 * Checks `needs` before the command `name` starts anything: when one is
 * missing, prints {@linkcode permissionMessage} on stderr and returns the
 * exit code 2; else undefined.
 */
export function refuseMissingPermissions(
  name: string,
  needs: readonly Need[],
): number | undefined {
  const missing = missingPermissions(needs);
  if (missing.length === 0) return undefined;
  console.error(permissionMessage(name, missing));
  return 2;
}

const DENIED =
  /Requires (\w+) access to "?([^",]*?)"?, run again with the --allow-(\w+) flag/;

/** Options of {@linkcode explainPermissionError}. */
export interface ExplainOptions {
  /**
   * Suggest the folder of a file that could not be read (a module, whose
   * neighbours are read next), not the file.
   *
   * @default {false}
   */
  readonly folder?: boolean;
}

/**
 * What a permission error means, from Deno's text (`Requires net access
 * to "127.0.0.1:9101", run again with the --allow-net flag`) wherever it
 * is (a `NotCapable` itself, or an error that quotes one in its message or
 * cause): `Requires net access to "127.0.0.1:9101": Deno needs
 * --allow-net=127.0.0.1:9101 (see docs/permissions.md)`. Undefined for
 * other errors.
 */
export function explainPermissionError(
  error: unknown,
  options: ExplainOptions = {},
): string | undefined {
  const { folder = false } = options;
  const cause = error instanceof Error ? error.cause : undefined;
  const match = DENIED.exec(messageOf(error)) ??
    (cause === undefined ? null : DENIED.exec(messageOf(cause)));
  if (match === null) return undefined;
  const [, kind, target = "", flag] = match;
  const grant = kind === "read" && folder ? dirname(target) : target;
  // `sys` names an API (`hostname`), the others a host, path or variable.
  const wanted = grant === "" ? `--allow-${flag}` : `--allow-${flag}=${grant}`;
  const what = target === "" ? "" : ` "${target}"`;
  return `Requires ${kind} access to${what}: Deno needs ${wanted} (see ${PERMISSIONS_DOC})`;
}

/**
 * Says on stderr what a permission error of a start means (see
 * {@linkcode explainPermissionError}) and returns the exit code 2;
 * undefined when `error` is not one.
 */
export function reportPermissionFailure(
  name: string,
  error: unknown,
): number | undefined {
  const reason = explainPermissionError(error);
  if (reason === undefined) return undefined;
  console.error(`${name}: ${reason}`);
  return 2;
}
