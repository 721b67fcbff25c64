// The chat demo in one command: a register and two chat services, each its
// own process as in production, until Ctrl-C.
//
//   deno task demo        (deno run -A examples/chat/demo.ts)
//
// Open the two printed URLs in two browser windows: each page shows which
// service it is connected to, and messages cross from one to the other.

import {
  type CommandSpec,
  logLevelFlag,
  readCommandLine,
  stopSignals,
} from "../../internal/cli/command_line.ts";
import { splitLines } from "../../tests/_lines.ts";

const COMMAND: CommandSpec = {
  name: "demo",
  usage: "deno task demo [flags]",
  summary:
    "Starts a register and two chat services, prints the two URLs, and stops them all on Ctrl-C.",
  flags: [
    {
      name: "hostname",
      kind: "string",
      description: "address the chat pages listen on",
      defaultText: "127.0.0.1",
    },
    {
      name: "port",
      kind: "port",
      description: "port of service A; B gets the next one (0: any free ports)",
      defaultText: "9201",
    },
    {
      name: "rpc-port",
      kind: "port",
      description: "gRPC port of service A; B gets the next one",
      defaultText: "9101",
    },
    {
      name: "register-port",
      kind: "port",
      description: "the register's gRPC port",
      defaultText: "8101",
    },
    {
      name: "http-port",
      kind: "port",
      description: "the register's /healthz and /metrics port",
      defaultText: "8102",
    },
    logLevelFlag("info"),
  ],
};

const root = new URL("../../", import.meta.url);

/** A child process and the first lines it printed on stdout. */
interface Child {
  readonly name: string;
  readonly process: Deno.ChildProcess;
  readonly lines: readonly string[];
}

/** Runs `deno run -A <script>` and waits for its first `count` lines. */
async function spawn(
  name: string,
  script: string,
  args: string[],
  count = 1,
): Promise<Child> {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(script, root).pathname, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = process.stdout.pipeThrough(new TextDecoderStream())
    .pipeThrough(splitLines());
  const reader = lines.getReader();
  const first: string[] = [];
  while (first.length < count) {
    const line = await reader.read();
    if (line.done) {
      const status = await process.status;
      throw new Error(
        `${name} exited with code ${status.code} before starting`,
      );
    }
    first.push(line.value);
  }
  // Keep draining stdout so the child never blocks on a full pipe.
  (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();
  return { name, process, lines: first };
}

function next(port: number): number {
  return port === 0 ? 0 : port + 1;
}

async function main(): Promise<number> {
  const flags = readCommandLine(COMMAND);
  const hostname = String(flags.hostname ?? "127.0.0.1");
  const port = Number(flags.port ?? 9201);
  const rpcPort = Number(flags["rpc-port"] ?? 9101);
  const registerPort = Number(flags["register-port"] ?? 8101);
  const httpPort = Number(flags["http-port"] ?? 8102);
  const logLevel = String(flags["log-level"] ?? "info");

  using stop = stopSignals();
  const children: Child[] = [];
  async function stopAll(): Promise<void> {
    for (const child of children) {
      try {
        child.process.kill("SIGTERM");
      } catch {
        // Already gone.
      }
    }
    await Promise.all(children.map((c) => c.process.status));
  }

  try {
    const register = await spawn("register", "register.ts", [
      "--hostname",
      "127.0.0.1",
      "--port",
      String(registerPort),
      "--http-port",
      String(httpPort),
      "--log-level",
      logLevel,
    ], 2);
    children.push(register);
    const address = /listening on (\S+)$/.exec(register.lines[0]!)?.[1];
    const health = /health on (\S+),/.exec(register.lines[1]!)?.[1];
    if (address === undefined || health === undefined) {
      throw new Error(`unexpected register output: ${register.lines}`);
    }
    const started = await Promise.allSettled(
      ([["A", port, rpcPort], ["B", next(port), next(rpcPort)]] as const).map(
        ([name, p, rpc]) =>
          spawn(`service ${name}`, "examples/chat/service.ts", [
            "--name",
            name,
            "--register",
            address,
            "--hostname",
            hostname,
            "--port",
            String(p),
            "--rpc-port",
            String(rpc),
            "--log-level",
            logLevel,
          ]),
      ),
    );
    for (const result of started) {
      if (result.status === "fulfilled") children.push(result.value);
    }
    const failed = started.find((r) => r.status === "rejected");
    if (failed !== undefined) throw failed.reason;
    const urls = children.slice(1).map((c) =>
      /on (http:\/\/\S+)/.exec(c.lines[0]!)?.[1] ?? c.lines[0]
    );
    console.log("");
    console.log("  wsgate chat demo: a register and two services");
    console.log("");
    console.log(`  service A   ${urls[0]}`);
    console.log(`  service B   ${urls[1]}`);
    console.log(`  register    ${address}  (health: ${health})`);
    console.log("");
    console.log(
      "  Open both pages, pick two nicknames, and chat across services.",
    );
    console.log("  Ctrl-C stops everything.");
    console.log("");
  } catch (error) {
    console.error(`demo: ${(error as Error).message}`);
    await stopAll();
    return 1;
  }

  // Stop on Ctrl-C, or when any child dies on its own.
  const died = Promise.race(
    children.map((c) => c.process.status.then(() => c)),
  );
  const first = await Promise.race([stop.stopped.then(() => undefined), died]);
  if (first !== undefined) {
    console.error(`demo: ${first.name} stopped; stopping the others`);
  }
  await stopAll();
  console.log("demo stopped");
  return first === undefined ? 0 : 1;
}

if (import.meta.main) {
  Deno.exit(await main());
}
