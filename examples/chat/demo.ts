// The chat demo in one command: a register and two chat services, each its
// own process as in production, until Ctrl-C.
//
//   deno task demo        (deno run --allow-run examples/chat/demo.ts)
//
// Open the two printed URLs in two browser windows: each page shows which
// service it is connected to, and messages cross from one to the other.

import { parseArgs } from "node:util";

const HELP = `Usage: deno task demo [flags]

Starts a register and two chat services, prints the two URLs, and stops them
all on Ctrl-C.

Flags:
  --hostname VALUE       address the chat pages listen on (default 127.0.0.1)
  --port VALUE           port of service A; B gets the next one (default 9201)
  --rpc-port VALUE       gRPC port of service A; B gets the next one (default 9101)
  --register-port VALUE  the register's gRPC port (default 8101)
  --http-port VALUE      the register's /healthz and /metrics port (default 8102)
  --log-level VALUE      error, warn, info or debug (default info)
  --help                 show this help

Every port follows --port unless set: --port 0 makes them all free ports
(so that several demos run at once), and --port 9301 moves them all by 100
(gRPC 9201 and 9202, register 8201, health 8202).`;

/** The ports of the demo by default, each moving with --port. */
const DEFAULT_PORTS = {
  port: 9201,
  "rpc-port": 9101,
  "register-port": 8101,
  "http-port": 8102,
} as const;

type PortFlag = keyof typeof DEFAULT_PORTS;

/** The demo's flags, ports as numbers. */
interface Flags {
  readonly hostname: string;
  readonly logLevel: string;
  readonly ports: Readonly<Record<PortFlag, number>>;
}

/**
 * The port of `name` when it is not set: 0 when --port is 0, else its
 * default moved by as much as --port moved.
 */
function followPort(name: PortFlag, port: number): number {
  return port === 0 ? 0 : DEFAULT_PORTS[name] + port - DEFAULT_PORTS.port;
}

/** The flags, or the exit code after printing the help or what is wrong. */
function readFlags(): Flags | number {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        hostname: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: String(DEFAULT_PORTS.port) },
        "rpc-port": { type: "string" },
        "register-port": { type: "string" },
        "http-port": { type: "string" },
        "log-level": { type: "string", default: "info" },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (error) {
    console.error(`demo: ${(error as Error).message} (see --help)`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const names = Object.keys(DEFAULT_PORTS) as PortFlag[];
  for (const name of names) {
    const value = values[name];
    if (
      value !== undefined && (!/^\d{1,5}$/.test(value) || Number(value) > 65535)
    ) {
      console.error(
        `demo: Cannot use --${name} "${value}": expected a port from 0 to 65535`,
      );
      return 2;
    }
  }
  const port = Number(values.port);
  const ports = {} as Record<PortFlag, number>;
  for (const name of names) {
    const value = values[name];
    ports[name] = value === undefined ? followPort(name, port) : Number(value);
    // Services A and B take the port and the next one.
    const pair = name === "port" || name === "rpc-port";
    const highest = pair && ports[name] !== 0 ? ports[name] + 1 : ports[name];
    if (ports[name] >= 0 && highest <= 65535) continue;
    console.error(
      value === undefined
        ? `demo: Cannot use --port ${port}: --${name} would follow it to ${
          ports[name]
        }, out of 0 to 65535; pick another --port (0 for free ones), or set --${name}`
        : `demo: Cannot use --${name} ${value}: service B takes the next port, ${highest}; pick a lower one`,
    );
    return 2;
  }
  return {
    hostname: values.hostname,
    logLevel: values["log-level"],
    ports,
  };
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

/**
 * Runs `deno run <permissions> <script>` and waits for its first `count`
 * lines.
 */
async function spawn(
  name: string,
  script: string,
  permissions: string[],
  args: string[],
  count = 1,
): Promise<Child> {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, new URL(script, root).pathname, ...args],
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
      // What the child printed names its own flags; the demo's differ.
      throw new Error(
        `${name} exited with code ${status.code} before starting (a port in use? --port moves every port of the demo, and --port 0 picks free ones)`,
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
  const { hostname, logLevel } = flags;
  const {
    port,
    "rpc-port": rpcPort,
    "register-port": registerPort,
    "http-port": httpPort,
  } = flags.ports;

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
    // Each child gets only what it needs (docs/permissions.md): loopback
    // for the register; for a service, its WebSocket address too, and
    // reading this repository (the chat, its page, and the library's
    // modules that the chat imports).
    const env = "--allow-env=WSGATE_*";
    const register = await spawn("register", "register.ts", [
      "--allow-net=127.0.0.1",
      env,
    ], [
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
            `--allow-net=127.0.0.1,${
              hostname.includes(":") ? `[${hostname}]` : hostname
            }`,
            env,
            `--allow-read=${root.pathname}`,
          ], [
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
    // The addresses the children print are the ones they listen on, free
    // ports included. Each page also names the other service, which it
    // falls back on when its own goes away (`?services=`).
    const urls = children.slice(1).map((c) =>
      /on (http:\/\/\S+)/.exec(c.lines[0]!)?.[1] ?? c.lines[0]!
    );
    const [a, b] = children.slice(1).map((c, i) => {
      const other = URL.parse(urls[1 - i]!)?.host;
      const url = other === undefined
        ? urls[i]
        : `${urls[i]}?services=${other}`;
      const rpc = /rpc (\S+?)[,)]/.exec(c.lines[0]!)?.[1];
      return rpc === undefined ? url : `${url}  (rpc ${rpc})`;
    });
    console.log("");
    console.log("  wsgate chat demo: a register and two services");
    console.log("");
    console.log(`  service A   ${a}`);
    console.log(`  service B   ${b}`);
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
