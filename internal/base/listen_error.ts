// Why a server could not listen, said in terms of the option that fixes
// it: a port in use, an address that is not this machine's, a hostname
// that does not resolve, a port below 1024 without the right to it. The
// library names the option (`'rpcPort'`), the command lines the flag
// (`--rpc-port`), with the same sentence.

import { GatewayError } from "../../errors.ts";
import { formatHostPort } from "./address.ts";

/** The options a server listens by, as the caller named them. */
export interface ListenOptionNames {
  /** The option that sets the port, e.g. `"rpcPort"`. */
  readonly port: string;
  /** The option that sets the address, e.g. `"hostname"`. */
  readonly hostname: string;
}

/** Options named `port` and `hostname`, the defaults of every server. */
export const DEFAULT_OPTION_NAMES: ListenOptionNames = {
  port: "port",
  hostname: "hostname",
};

/** What kept a server from listening. */
export type ListenProblem =
  | "in_use"
  | "not_local"
  | "unresolved"
  | "not_permitted";

/**
 * A server that could not listen: a `GatewayError` (`unavailable` for a port
 * in use, else `invalid_argument`) that also says which option to change.
 */
export class ListenError extends GatewayError {
  /** What kept it from listening. */
  readonly problem: ListenProblem;
  /** Where it tried, `host:port`. */
  readonly address: string;
  readonly hostname: string;
  /** The option that fixes it: the port's or the address's. */
  readonly option: string;

  constructor(
    problem: ListenProblem,
    hostname: string,
    port: number,
    names: ListenOptionNames,
    cause: unknown,
  ) {
    const address = formatHostPort(hostname, port);
    const option = problem === "in_use" || problem === "not_permitted"
      ? names.port
      : names.hostname;
    super(
      problem === "in_use" ? "unavailable" : "invalid_argument",
      listenFailureText(
        { problem, address, hostname, option },
        (name) => `the '${name}' option`,
      ),
      { cause },
    );
    this.problem = problem;
    this.address = address;
    this.hostname = hostname;
    this.option = option;
  }
}

/**
 * The sentence for a failed listen, with `how(option)` naming what to
 * change: `the 'port' option` for the library, `--port` for a command
 * line.
 */
export function listenFailureText(
  error: Pick<ListenError, "problem" | "address" | "hostname" | "option">,
  how: (option: string) => string,
): string {
  const fix = how(error.option);
  const reason = {
    in_use: `the port is in use (pick another with ${fix})`,
    not_local:
      `${error.hostname} is not an address of this machine (set ${fix} to one of its addresses, "127.0.0.1" for this machine only, or "0.0.0.0" for every interface)`,
    unresolved:
      `the hostname ${error.hostname} does not resolve (set ${fix} to an address of this machine, such as "127.0.0.1" or "0.0.0.0")`,
    not_permitted:
      `this process may not listen on ports below 1024 (pick a port from 1024 with ${fix}, or grant CAP_NET_BIND_SERVICE)`,
  }[error.problem];
  return `Cannot listen on ${error.address}: ${reason}`;
}

/**
 * What `error`, thrown by `Deno.listen` or node's `server.listen`, means
 * for the server at `hostname:port`: a {@linkcode ListenError} when it is
 * one of the known problems, else `error` itself.
 */
export function toListenError(
  error: unknown,
  hostname: string,
  port: number,
  names: ListenOptionNames = DEFAULT_OPTION_NAMES,
): unknown {
  const problem = problemOf(error, port);
  if (problem === undefined) return error;
  return new ListenError(problem, hostname, port, names, error);
}

/**
 * Deno's listeners throw `Deno.errors.*`; node's (node:http2) an Error with
 * a `code`. A foreign address is EADDRNOTAVAIL for Deno but EINVAL for
 * node; a missing `--allow-net` (`NotCapable`) is left as Deno says it.
 */
function problemOf(error: unknown, port: number): ListenProblem | undefined {
  if (error instanceof Deno.errors.AddrInUse) return "in_use";
  if (error instanceof Deno.errors.AddrNotAvailable) return "not_local";
  if (error instanceof Deno.errors.PermissionDenied && port < 1024) {
    return "not_permitted";
  }
  if (!(error instanceof Error)) return undefined;
  const code = "code" in error ? error.code : undefined;
  if (code === "EADDRINUSE") return "in_use";
  if (code === "EADDRNOTAVAIL" || code === "EINVAL") return "not_local";
  if (code === "EACCES" && port < 1024) return "not_permitted";
  if (
    code === "ENOTFOUND" || code === "EAI_AGAIN" ||
    /failed to lookup address information/.test(error.message)
  ) {
    return "unresolved";
  }
  return undefined;
}
