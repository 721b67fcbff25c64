// The chat demo in one command: a register and two chat services, each its
// own process as in production, until Ctrl-C.
//
//   deno task demo        (deno run -A examples/chat/demo.ts)
//
// Open the two printed URLs in two browser windows: each page shows which
// service it is connected to, and messages cross from one to the other.

import { parseArgs } from "node:util";

const HELP = `Usage: deno task demo [flags]

Starts a register and two chat services, prints the two URLs, and stops them
all on Ctrl-C.

Flags:
  --hostname VALUE       address the chat pages listen on (default 127.0.0.1)
  --port VALUE           port of service A; B gets the next one (0: any free ports) (default 9201)
  --rpc-port VALUE       gRPC port of service A; B gets the next one (default 9101)
  --register-port VALUE  the register's gRPC port (default 8101)
  --http-port VALUE      the register's /healthz and /metrics port (default 8102)
  --log-level VALUE      error, warn, info or debug (default info)
  --help                 show this help`;

/** The flags, or the exit code after printing the help or what is wrong. */
function readFlags(): Record<string, string> | number {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        hostname: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: "9201" },
        "rpc-port": { type: "string", default: "9101" },
        "register-port": { type: "string", default: "8101" },
        "http-port": { type: "string", default: "8102" },
        "log-level": { type: "string", default: "info" },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (error) {
    console.error(`demo: ${(error as Error).message} (see --help)`);
    return 2;
  }
  const { help, ...flags } = values;
  if (help) {
    console.log(HELP);
    return 0;
  }
  for (const name of ["port", "rpc-port", "register-port", "http-port"]) {
    const value = flags[name as keyof typeof flags];
    if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) {
      console.error(
        `demo: Cannot use --${name} "${value}": expected a port from 0 to 65535`,
      );
      return 2;
    }
  }
  return flags;
}

/** Cuts a stream of text into lines. */
async function* linesOf(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<string> {
  let buffer = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    buffer += text;
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      yield buffer.slice(0, end);
      buffer = buffer.slice(end + 1);
    }
  }
  if (buffer !== "") yield buffer;
}

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
  const lines = linesOf(process.stdout);
  const first: string[] = [];
  while (first.length < count) {
    const line = await lines.next();
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
    while (!(await lines.next()).done) { /* discard */ }
  })();
  return { name, process, lines: first };
}

function next(port: number): number {
  return port === 0 ? 0 : port + 1;
}

async function main(): Promise<number> {
  const flags = readFlags();
  if (typeof flags === "number") return flags;
  const hostname = flags.hostname!;
  const port = Number(flags.port);
  const rpcPort = Number(flags["rpc-port"]);
  const registerPort = Number(flags["register-port"]);
  const httpPort = Number(flags["http-port"]);
  const logLevel = flags["log-level"]!;

  const stop = Promise.withResolvers<void>();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => stop.resolve());
  }
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
          spawn(`service ${name}`, "service.ts", [
            "--app",
            "examples/chat/app.ts",
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
  const first = await Promise.race([stop.promise.then(() => undefined), died]);
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
