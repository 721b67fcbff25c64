// `deno run -A bench/peers.ts`: wsgate next to other systems, in one run on
// one machine, with the same load generator (bench/load.ts) and the same
// app protocol. Three peers, measured one after the other in each round:
//
//   raw      raw Deno: one process, Deno.serve + Deno.upgradeWebSocket
//            (bench/raw_server.ts); the ceiling for one process, and the
//            baseline of every ratio.
//   socketio Socket.IO 4.8 with @socket.io/redis-adapter: two Node
//            processes (bench/peers/socketio/server.mjs) and a redis-server.
//   wsgate   a register and two services running bench/app.ts.
//
// It installs what it needs first: `npm ci` in bench/peers/socketio when
// node_modules is missing or does not match package-lock.json, and
// `apt-get install -y redis-server` when redis-server is missing (as root;
// otherwise it says what to run). Before each peer it waits, bounded, for a
// quiet machine; a peer whose phases saw more than --noisy % "other" CPU is
// measured again, at most --retries times. Then it prints, per round, a
// table of absolute figures and ratios against raw Deno in the same round.
//
//   deno run -A bench/peers.ts                 one round, ~1.5 min
//   deno run -A bench/peers.ts --rounds 2      A B A B
//   deno run -A bench/peers.ts --smoke         routing check of each peer
//   deno run -A bench/peers.ts --help          every option
//
// Everything listens on and connects to 127.0.0.1; ports are picked by the
// kernel (port 0) or probed free just before use. Every process it starts
// is stopped by its PID, also when something fails.

import {
  endProgress,
  type Figure,
  fmt,
  get,
  type Json,
  logFolder,
  machineLine,
  median,
  n0,
  n1,
  n2,
  note,
  num,
  pidOf,
  raiseFileLimit,
  ratio,
  root,
  runLoad,
  setStep,
  showProgress,
  sleep,
  spawn,
  startCluster,
  startRaw,
  stopAll,
  stopOnSignals,
  table,
  type Target,
  utcNow,
  waitQuiet,
} from "./harness.ts";
import { machineBusyPct } from "./proc.ts";

const PEERS = ["raw", "socketio", "wsgate"] as const;
type Peer = typeof PEERS[number];
const PEER_NAMES: Record<Peer, string> = {
  raw: "raw Deno (1 process)",
  socketio: "Socket.IO + Redis (2 Node + redis)",
  wsgate: "wsgate (register + 2 services)",
};
const SOCKETIO_DIR = `${root}bench/peers/socketio`;

// ---------------------------------------------------------------- options

interface Options {
  rounds: number;
  peers: Peer[];
  clients: number;
  size: number;
  bcast: number;
  bcastWindows: string;
  bcastLat: number;
  p2p: number;
  p2pWindow: number;
  client: string;
  quietMax: number;
  quietWaitS: number;
  noisy: number;
  retries: number;
  json: string | undefined;
  smoke: boolean;
}

const HELP = `usage: deno run -A bench/peers.ts [options]

Raw Deno, Socket.IO with its Redis adapter and wsgate, side by side.

  --rounds N          rounds of raw, socketio, wsgate (default 1)
  --peers LIST        which peers, comma-separated (default raw,socketio,wsgate)
  --clients C         client WebSockets, spread over each peer's servers (2000)
  --size S            bytes per message (64)
  --bcast M           broadcasts per window (200)
  --bcast-window W,W  broadcasts in flight; each is run, the best is shown (4,16)
  --bcast-lat N       broadcasts one at a time (50)
  --p2p N             point-to-point messages (20000)
  --p2p-window W      point-to-point messages in flight (200)
  --client KIND       load generator client: ffi, tcp or native (ffi)
  --quiet-max PCT     wait before each peer until the machine is less busy (15)
  --quiet-wait S      ... for at most this long (30)
  --noisy PCT         measure a peer again when "other" CPU was above (25)
  --retries N         ... at most this often (2)
  --json FILE         also write every raw result there
  --smoke             check the routing of each peer (ids, broadcast,
                      point-to-point across processes) instead of measuring
`;

function parseOptions(args: readonly string[]): Options {
  const o: Options = {
    rounds: 1,
    peers: [...PEERS],
    clients: 2000,
    size: 64,
    bcast: 200,
    bcastWindows: "4,16",
    bcastLat: 50,
    p2p: 20000,
    p2pWindow: 200,
    client: "ffi",
    quietMax: 15,
    quietWaitS: 30,
    noisy: 25,
    retries: 2,
    json: undefined,
    smoke: false,
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const value = () => {
      const v = args[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    const int = (least = 0) => {
      const n = Number(value());
      if (!Number.isInteger(n) || n < least) {
        throw new Error(`${arg} needs a whole number of at least ${least}`);
      }
      return n;
    };
    switch (arg) {
      case "--rounds":
        o.rounds = int(1);
        break;
      case "--peers": {
        const list = value().split(",").filter(Boolean);
        for (const p of list) {
          if (!(PEERS as readonly string[]).includes(p)) {
            throw new Error(`unknown peer ${p} (${PEERS.join(", ")})`);
          }
        }
        o.peers = PEERS.filter((p) => list.includes(p));
        break;
      }
      case "--clients":
        o.clients = int(2);
        break;
      case "--size":
        o.size = int();
        break;
      case "--bcast":
        o.bcast = int();
        break;
      case "--bcast-window":
        o.bcastWindows = value();
        if (!/^\d+(,\d+)*$/.test(o.bcastWindows)) {
          throw new Error("--bcast-window needs numbers like 4,16");
        }
        break;
      case "--bcast-lat":
        o.bcastLat = int();
        break;
      case "--p2p":
        o.p2p = int();
        break;
      case "--p2p-window":
        o.p2pWindow = int(1);
        break;
      case "--client":
        o.client = value();
        if (!["ffi", "tcp", "native"].includes(o.client)) {
          throw new Error("--client must be ffi, tcp or native");
        }
        break;
      case "--quiet-max":
        o.quietMax = int(1);
        break;
      case "--quiet-wait":
        o.quietWaitS = int();
        break;
      case "--noisy":
        o.noisy = int(1);
        break;
      case "--retries":
        o.retries = int();
        break;
      case "--json":
        o.json = value();
        break;
      case "--smoke":
        o.smoke = true;
        break;
      case "-h":
      case "--help":
        console.log(HELP);
        Deno.exit(0);
        break;
      default:
        throw new Error(`unknown option ${arg} (see --help)`);
    }
  }
  if (o.peers.length === 0) throw new Error("--peers names no peer");
  return o;
}

// ---------------------------------------------------------------- tools

/** Runs a command; its output goes to stderr. Resolves to its exit code. */
async function run(
  command: string,
  args: string[],
  cwd = root,
  timeoutS = 600,
): Promise<number> {
  const child = new Deno.Command(command, {
    args,
    cwd,
    env: { DEBIAN_FRONTEND: "noninteractive" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, timeoutS * 1000);
  const toStderr = (stream: ReadableStream<Uint8Array>) =>
    stream.pipeTo(
      new WritableStream({
        write(bytes) {
          for (let at = 0; at < bytes.length;) {
            at += Deno.stderr.writeSync(bytes.subarray(at));
          }
        },
      }),
    ).catch(() => {});
  await Promise.all([toStderr(child.stdout), toStderr(child.stderr)]);
  const { code } = await child.status;
  clearTimeout(timer);
  return code;
}

/** The first line a command prints, or undefined when it cannot run. */
async function firstLine(
  command: string,
  args: string[],
): Promise<string | undefined> {
  try {
    const out = await new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!out.success) return undefined;
    return new TextDecoder().decode(out.stdout).split("\n")[0]?.trim();
  } catch {
    return undefined;
  }
}

class SetupError extends Error {}

async function sha256(path: string): Promise<string> {
  const bytes = await Deno.readFile(path);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Node, the Socket.IO peer's packages (npm ci when node_modules does not
 * match package-lock.json) and redis-server (apt-get when missing).
 */
async function setUpSocketIo(): Promise<{ node: string; redis: string }> {
  const node = await firstLine("node", ["--version"]);
  if (node === undefined) {
    throw new SetupError(
      "node is not on PATH: the Socket.IO peer needs Node.js 18 or later (or leave it out: --peers raw,wsgate)",
    );
  }
  const lock = `${SOCKETIO_DIR}/package-lock.json`;
  const stamp = `${SOCKETIO_DIR}/node_modules/.wsgate-bench-lock`;
  const want = await sha256(lock);
  const have = await Deno.readTextFile(stamp).catch(() => "");
  if (have.trim() !== want) {
    note(
      "installing the Socket.IO peer: npm ci in bench/peers/socketio (package-lock.json)",
    );
    const code = await run("npm", [
      "ci",
      "--no-audit",
      "--no-fund",
      "--loglevel",
      "error",
    ], SOCKETIO_DIR).catch(() => -1);
    if (code !== 0) {
      throw new SetupError(
        `npm ci in bench/peers/socketio failed (exit ${code}); run it there by hand to see why`,
      );
    }
    await Deno.writeTextFile(stamp, want + "\n");
  }
  let redis = await firstLine("redis-server", ["--version"]);
  if (redis === undefined) {
    const root = Deno.uid() === 0;
    const apt = await firstLine("apt-get", ["--version"]);
    if (!root || apt === undefined) {
      throw new SetupError(
        "redis-server is missing; install it (Debian/Ubuntu: apt-get install -y redis-server, as root) or leave the Socket.IO peer out: --peers raw,wsgate",
      );
    }
    note("installing redis-server: apt-get install -y redis-server");
    let code = await run("apt-get", ["install", "-y", "redis-server"]);
    if (code !== 0) {
      note("apt-get install failed; running apt-get update once, then again");
      await run("apt-get", ["update"]);
      code = await run("apt-get", ["install", "-y", "redis-server"]);
    }
    redis = await firstLine("redis-server", ["--version"]);
    if (code !== 0 || redis === undefined) {
      throw new SetupError(
        "apt-get install -y redis-server failed; install redis-server by hand or pass --peers raw,wsgate",
      );
    }
  }
  return { node, redis };
}

// ---------------------------------------------------------------- peers

/** A free port on 127.0.0.1, probed just before it is used. */
function probePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** redis-server on a probed port; tries another port if that one is taken. */
async function startRedis(): Promise<number> {
  let last: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = probePort();
    try {
      await spawn("redis", [
        "--bind",
        "127.0.0.1",
        "--port",
        String(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
      ], {
        command: "redis-server",
        cwd: await logFolder(),
        ready: /Ready to accept connections/,
        timeoutMs: 10_000,
      });
      return port;
    } catch (error) {
      last = error;
    }
  }
  throw last;
}

async function startSocketIo(): Promise<Target> {
  const redisPort = await startRedis();
  const urls: string[] = [];
  const pids: string[] = [];
  for (const name of ["node1", "node2"]) {
    const node = await spawn(name, [
      "server.mjs",
      "--redis",
      `redis://127.0.0.1:${redisPort}`,
      "--port",
      "0",
    ], { command: "node", cwd: SOCKETIO_DIR, ready: /^\{"port":/ });
    const { port } = JSON.parse(node.line) as { port: number };
    urls.push(`ws://127.0.0.1:${port}/`);
    pids.push(`${name}:${node.pid}`);
  }
  pids.push(`redis:${pidOf("redis")}`);
  return {
    label: "socketio",
    urls,
    pids: pids.join(","),
    protocol: "socketio",
  };
}

function startPeer(peer: Peer): Promise<Target> {
  switch (peer) {
    case "raw":
      return startRaw();
    case "socketio":
      return startSocketIo();
    case "wsgate":
      return startCluster(2);
  }
}

// ---------------------------------------------------------------- measuring

/** The phases whose "other" CPU decides whether a measurement was noisy. */
function measuredPhases(r: Json): string[] {
  return Object.keys(r).filter((k) =>
    /^bcast_w\d+$/.test(k) || k === "bcast_lat" || k === "p2p"
  );
}

/** The highest "other" CPU of the measured phases, in % of one core. */
function worstOther(r: Json): number | undefined {
  let worst: number | undefined;
  for (const phase of measuredPhases(r)) {
    const other = num(get(r, phase, "cpu_pct", "other"));
    if (other !== undefined && (worst === undefined || other > worst)) {
      worst = other;
    }
  }
  return worst;
}

interface Measurement {
  round: number;
  peer: Peer;
  attempt: number;
  /** Machine busy % just before the peer started. */
  busy_before_pct: number;
  noisy: boolean;
  result: Json;
}

const measurements: Measurement[] = [];

function loadArgs(o: Options): string[] {
  const args = ["--clients", String(o.clients), "--client", o.client];
  if (o.smoke) return [...args, "--smoke"];
  return [
    ...args,
    "--size",
    String(o.size),
    "--bcast",
    String(o.bcast),
    "--bcast-window",
    o.bcastWindows,
    "--bcast-lat",
    String(o.bcastLat),
    "--p2p",
    String(o.p2p),
    "--p2p-window",
    String(o.p2pWindow),
  ];
}

/** One peer in one round, measured again while it was noisy. */
async function measure(o: Options, round: number, peer: Peer): Promise<Json> {
  const tag = o.rounds > 1 ? ` (round ${round} of ${o.rounds})` : "";
  for (let attempt = 1;; attempt++) {
    setStep(`${PEER_NAMES[peer]}${tag}${attempt > 1 ? `, again` : ""}`);
    // A smoke check measures nothing: it does not wait for a quiet machine.
    const busy = o.smoke
      ? await machineBusyPct(200)
      : await waitQuiet(o.quietMax, o.quietWaitS);
    let result: Json;
    try {
      const target = await startPeer(peer);
      showProgress("started");
      await sleep(500);
      result = await runLoad(target, loadArgs(o));
    } catch (error) {
      result = { label: peer, error: (error as Error).message };
    } finally {
      await stopAll();
    }
    const worst = worstOther(result);
    const noisy = worst !== undefined && worst > o.noisy;
    measurements.push({
      round,
      peer,
      attempt,
      busy_before_pct: busy,
      noisy,
      result,
    });
    if (result.error !== undefined) {
      note(`${peer}${tag}: ERROR ${result.error}`);
    }
    if (!noisy) return result;
    if (attempt > o.retries) {
      // Still noisy: keep the attempt that was disturbed least.
      const tries = measurements.filter((m) =>
        m.round === round && m.peer === peer
      );
      const quietest = tries.reduce((a, b) =>
        (worstOther(b.result) ?? Infinity) < (worstOther(a.result) ?? Infinity)
          ? b
          : a
      );
      return quietest.result;
    }
    note(
      `${peer}${tag}: ${worst}% "other" CPU during a phase; measuring it again`,
    );
  }
}

// ---------------------------------------------------------------- report

const ROWS: readonly Figure[] = [
  {
    name: "broadcast deliveries/s (best W)",
    path: ["bcast", "msgs_per_s"],
    format: n0,
    unit: "",
  },
  {
    name: "broadcast server CPU per delivery",
    path: ["bcast", "server_cpu_us_per_msg"],
    format: n2,
    unit: " µs",
  },
  {
    name: "one broadcast in flight: p50 per client",
    path: ["bcast_lat", "p50_ms"],
    format: n2,
    unit: " ms",
  },
  {
    name: "one broadcast in flight: p50 until all clients have it",
    path: ["bcast_lat", "all_p50_ms"],
    format: n2,
    unit: " ms",
  },
  {
    name: "point-to-point msgs/s",
    path: ["p2p", "msgs_per_s"],
    format: n0,
    unit: "",
  },
  {
    name: "point-to-point p50",
    path: ["p2p", "p50_ms"],
    format: n2,
    unit: " ms",
  },
  {
    name: "point-to-point p99",
    path: ["p2p", "p99_ms"],
    format: n2,
    unit: " ms",
  },
  {
    name: "point-to-point server CPU per message",
    path: ["p2p", "server_cpu_us_per_msg"],
    format: n1,
    unit: " µs",
  },
];

/** "other" CPU of the broadcast, fan-out and point-to-point phases. */
function otherCell(r: Json | undefined): string {
  if (r === undefined) return "-";
  const w = get(r, "bcast", "window");
  const phase = typeof w === "number" ? `bcast_w${w}` : "bcast";
  return ["bcast", "bcast_lat", "p2p"].map((p) =>
    fmt(get(r, p === "bcast" ? phase : p, "cpu_pct", "other"), n0, "%")
  ).join(" / ");
}

/** Load generator CPU in the broadcast and point-to-point phases. */
function loadCell(r: Json | undefined): string {
  if (r === undefined) return "-";
  return ["bcast", "p2p"].map((p) => fmt(get(r, p, "cpu_pct", "load"), n0, "%"))
    .join(" / ");
}

/** Server CPU (all server processes) in the same phases, % of one core. */
function serverCell(r: Json | undefined): string {
  if (r === undefined) return "-";
  return ["bcast", "p2p"].map((p) => {
    const cpu = get(r, p, "cpu_pct");
    if (cpu === null || typeof cpu !== "object") return "-";
    let sum = 0;
    for (const [k, v] of Object.entries(cpu as Json)) {
      if (k !== "load" && k !== "other" && typeof v === "number") sum += v;
    }
    return `${n0.format(sum)}%`;
  }).join(" / ");
}

function roundTable(o: Options, byPeer: Map<Peer, Json>): string {
  const raw = byPeer.get("raw");
  const head = [`${o.clients} clients, ${o.size} B`];
  for (const p of o.peers) {
    head.push(PEER_NAMES[p]);
    if (p !== "raw" && raw !== undefined) head.push("÷ raw");
  }
  const rows: string[][] = [];
  for (const row of ROWS) {
    const cells = [row.name];
    for (const p of o.peers) {
      const v = get(byPeer.get(p), ...row.path);
      let cell = fmt(v, row.format, row.unit);
      if (row.path[0] === "bcast" && row.path[1] === "msgs_per_s") {
        const w = get(byPeer.get(p), "bcast", "window");
        if (typeof w === "number") cell += ` (W${w})`;
      }
      cells.push(cell);
      if (p !== "raw" && raw !== undefined) {
        cells.push(ratio(v, get(raw, ...row.path)));
      }
    }
    rows.push(cells);
  }
  const windows = o.bcastWindows.split(",");
  if (windows.length > 1) {
    for (const w of windows) {
      const cells = [`  broadcast deliveries/s at W=${w}`];
      for (const p of o.peers) {
        const v = get(byPeer.get(p), `bcast_w${w}`, "msgs_per_s");
        cells.push(fmt(v));
        if (p !== "raw" && raw !== undefined) {
          cells.push(ratio(v, get(raw, `bcast_w${w}`, "msgs_per_s")));
        }
      }
      rows.splice(1 + windows.indexOf(w), 0, cells);
    }
  }
  const extra = (name: string, cell: (r: Json | undefined) => string) => {
    const cells = [name];
    for (const p of o.peers) {
      cells.push(cell(byPeer.get(p)));
      if (p !== "raw" && raw !== undefined) cells.push("");
    }
    rows.push(cells);
  };
  extra("server CPU, % of one core (bcast / p2p)", serverCell);
  extra("load generator CPU (bcast / p2p)", loadCell);
  extra("other CPU (bcast / fan-out / p2p)", otherCell);
  return table(head, rows);
}

/** Median over rounds of each peer's ratio to raw Deno in its own round. */
function medianTable(o: Options, rounds: Map<Peer, Json>[]): string {
  const peers = o.peers.filter((p) => p !== "raw");
  const head = [
    "median over rounds of the ratio ÷ raw",
    ...peers.map((p) => PEER_NAMES[p]),
  ];
  const rows = ROWS.map((row) => [
    row.name,
    ...peers.map((p) => {
      const ratios: number[] = [];
      for (const byPeer of rounds) {
        const a = num(get(byPeer.get(p), ...row.path));
        const b = num(get(byPeer.get("raw"), ...row.path));
        if (a !== undefined && b !== undefined && b !== 0) ratios.push(a / b);
      }
      const m = median(ratios);
      return m === undefined ? "-" : `${n2.format(m)}×`;
    }),
  ]);
  return table(head, rows);
}

function report(
  o: Options,
  rounds: Map<Peer, Json>[],
  versions: string,
  busy: number,
): string {
  const out = [
    `wsgate peers, ${utcNow()}; ${machineLine()}; ${versions}; machine busy ${busy}% before the start`,
    `${o.clients} clients, ${o.size}-byte messages; broadcast ${o.bcast} per window (W = ${o.bcastWindows} in flight, best shown), ${o.bcastLat} one at a time; point-to-point ${o.p2p} (${o.p2pWindow} in flight, client i to client i+1, on the other process where there are two); ${o.client} client`,
  ];
  for (const [i, byPeer] of rounds.entries()) {
    out.push("");
    if (o.rounds > 1) out.push(`Round ${i + 1} of ${o.rounds}`);
    for (const p of o.peers) {
      const r = byPeer.get(p);
      if (r?.error !== undefined) out.push(`${p}: ERROR ${r.error}`);
      for (const phase of ["bcast", "bcast_lat", "p2p"]) {
        const x = get(r, phase);
        if (get(x, "error") !== undefined) {
          out.push(`${p} ${phase}: ERROR ${get(x, "error")}`);
        }
        if (get(x, "timed_out") === true) {
          out.push(
            `${p} ${phase}: TIMED OUT (${get(x, "delivered")} delivered)`,
          );
        }
        for (const k of ["misrouted", "dups"]) {
          const n = num(get(x, k));
          if (n !== undefined && n > 0) out.push(`${p} ${phase}: ${n} ${k}`);
        }
      }
      const lost = num(get(r, "unexpected_closes"));
      if (lost) out.push(`${p}: ${lost} clients closed during the run`);
    }
    const noisy = measurements.filter((m) =>
      m.round === i + 1 && m.noisy && byPeer.get(m.peer) === m.result
    );
    for (const m of noisy) {
      out.push(
        `${m.peer}: NOISY (other CPU above ${o.noisy}% in every attempt; the quietest is shown)`,
      );
    }
    out.push(roundTable(o, byPeer));
  }
  if (rounds.length > 1 && o.peers.includes("raw") && o.peers.length > 1) {
    out.push("", medianTable(o, rounds));
  }
  out.push(
    "",
    'Server CPU per delivery counts every server process (Socket.IO: both Node processes and redis-server; wsgate: both services and the register). "other" is busy CPU of the machine that neither the load generator nor a server used: noise.',
  );
  return out.join("\n");
}

function smokeReport(o: Options, rounds: Map<Peer, Json>[]): {
  text: string;
  ok: boolean;
} {
  const out: string[] = [];
  let ok = true;
  for (const byPeer of rounds) {
    for (const p of o.peers) {
      const r = byPeer.get(p);
      const passed = get(r, "smoke", "ok") === true;
      ok &&= passed;
      out.push(`${passed ? "PASS" : "FAIL"} ${PEER_NAMES[p]}`);
      if (r?.error !== undefined) out.push(`  error: ${r.error}`);
      const checks = get(r, "smoke", "checks");
      if (Array.isArray(checks)) {
        for (const c of checks as Json[]) {
          const { check, ok: good, ...rest } = c;
          out.push(
            `  ${good === true ? "ok  " : "FAIL"} ${check} ${
              JSON.stringify(rest)
            }`,
          );
        }
      }
    }
  }
  return { text: out.join("\n"), ok };
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  let o: Options;
  try {
    o = parseOptions(Deno.args);
  } catch (error) {
    console.error(`peers: ${(error as Error).message}`);
    Deno.exit(2);
  }
  if (o.smoke) {
    o.clients = Math.min(o.clients, 10);
    o.rounds = 1;
  }
  const logs = await logFolder();
  raiseFileLimit(Math.max(20_000, o.clients + 1000));
  const undoSignals = stopOnSignals();
  let versions = `Deno ${Deno.version.deno}`;
  if (o.peers.includes("socketio")) {
    setStep("setting up the Socket.IO peer");
    try {
      const { node, redis } = await setUpSocketIo();
      const lock = JSON.parse(
        await Deno.readTextFile(`${SOCKETIO_DIR}/package-lock.json`),
      ) as { packages?: Record<string, { version?: string }> };
      const v = (name: string) =>
        lock.packages?.[`node_modules/${name}`]?.version ?? "?";
      versions += `, Node ${node.replace(/^v/, "")}, ${
        / v=(\S+)/.exec(redis)?.[1] !== undefined
          ? `redis ${/ v=(\S+)/.exec(redis)![1]}`
          : redis
      }, socket.io ${v("socket.io")}, @socket.io/redis-adapter ${
        v("@socket.io/redis-adapter")
      }, redis (client) ${v("redis")}`;
    } catch (error) {
      endProgress();
      console.error(`peers: ${(error as Error).message}`);
      undoSignals();
      Deno.exit(1);
    }
  }
  setStep("checking that the machine is quiet");
  const busy = await machineBusyPct();
  const rounds: Map<Peer, Json>[] = [];
  try {
    for (let round = 1; round <= o.rounds; round++) {
      const byPeer = new Map<Peer, Json>();
      for (const peer of o.peers) {
        byPeer.set(peer, await measure(o, round, peer));
      }
      rounds.push(byPeer);
    }
  } finally {
    await stopAll();
    undoSignals();
    endProgress();
  }
  if (o.json !== undefined) {
    await Deno.writeTextFile(
      o.json,
      JSON.stringify(
        { options: o, versions, machine: machineLine(), measurements },
        null,
        2,
      ) + "\n",
    );
  }
  if (o.smoke) {
    const { text, ok } = smokeReport(o, rounds);
    console.log(`${text}\n\nlogs: ${logs}`);
    Deno.exit(ok ? 0 : 1);
  }
  console.log(`${report(o, rounds, versions, busy)}\n\nlogs: ${logs}`);
}

if (import.meta.main) {
  await main();
}
