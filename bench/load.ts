// The load generator of `deno task bench`: C WebSocket clients spread
// round-robin over the server URLs, speaking the bench app protocol
// (bench/app.ts), then measured phases. Prints ONE JSON line on stdout;
// progress lines ("progress: ...") go to stderr.
//
// Ported from our peer benchmark harness (../shared/bench/loadgen.ts in the
// workplace): the same clients (ws_client.ts), payload layout, phases and
// CPU accounting, so that its figures and ours compare. Added here: resident
// memory of the servers before and after connecting, holding the clients
// idle for a while, a getAllClientCount phase, and RPC counters read from
// each service before and after every phase.
//
// Phases, in this order, each only when asked for:
//   bcast      M broadcasts of S bytes, each to all C clients, at most W in
//              flight, once per W of --bcast-window; the best W is "bcast".
//   bcast_lat  --bcast-lat broadcasts, one at a time (fan-out latency).
//   p2p        N messages, client i -> client (i+1) % C (on the next server),
//              at most --p2p-window in flight.
//   count      --count getAllClientCount calls from client 0, one at a time
//              (text "count", answered "count:<n>"; ours only).
//
// usage: deno run -A bench/load.ts --url ws://127.0.0.1:9201/[,...] [options]
//   --clients C (2000)  --size S (64)  --client ffi|tcp|native (ffi)
//   --src-addrs 127.0.0.2-127.0.0.3  (bind clients to these; > ~28k clients)
//   --bcast M (200)  --bcast-window W[,W] (4,16)  --bcast-lat L (50)
//   --p2p N (20000)  --p2p-window W (200)  --count K (0)
//   --warmup-bcast (10)  --warmup-p2p (2000)  --hold S (0: seconds idle
//   after connecting, before the phases)  --connect-concurrency (200)
//   --connect-timeout S (60)  --phase-timeout S (60)
//   --pids name:pid,...  server processes: CPU and resident memory
//   --stats  read RPC counters from every server around each phase
//   --label NAME  copied into the JSON line

import { connectWs, STATS, type Transport, type WsConn } from "./ws_client.ts";

// ---------------------------------------------------------------- options

interface Options {
  urls: string[];
  client: Transport;
  srcAddrs: string[];
  clients: number;
  size: number;
  bcast: number;
  bcastWindows: number[];
  bcastLat: number;
  p2p: number;
  p2pWindow: number;
  count: number;
  warmupBcast: number;
  warmupP2p: number;
  holdS: number;
  connectConcurrency: number;
  connectTimeoutS: number;
  phaseTimeoutS: number;
  pids: { name: string; pid: number }[];
  stats: boolean;
  label: string;
}

/** "127.0.0.2-127.0.0.9" as a list; loopback only. */
function expandAddresses(spec: string): string[] {
  const [a = "", b = a] = spec.split("-");
  const re = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
  const ma = re.exec(a), mb = re.exec(b);
  if (!ma || !mb || ma[1] !== mb[1] || ma[2] !== mb[2]) {
    throw new Error(`bad --src-addrs ${spec} (127.x.y.A-127.x.y.B)`);
  }
  const out: string[] = [];
  for (let k = Number(ma[3]); k <= Number(mb[3]); k++) {
    out.push(`127.${ma[1]}.${ma[2]}.${k}`);
  }
  return out;
}

function parseOptions(argv: readonly string[]): Options {
  const values = new Map<string, string>();
  const flags = new Set(["stats"]);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("--")) throw new Error(`unexpected argument ${arg}`);
    const eq = arg.indexOf("=");
    const key = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    if (flags.has(key)) {
      values.set(key, "1");
      continue;
    }
    const value = eq < 0 ? argv[++i] : arg.slice(eq + 1);
    if (value === undefined) throw new Error(`missing value for ${arg}`);
    values.set(key, value);
  }
  const known = new Set([
    "url",
    "client",
    "src-addrs",
    "clients",
    "size",
    "bcast",
    "bcast-window",
    "bcast-lat",
    "p2p",
    "p2p-window",
    "count",
    "warmup-bcast",
    "warmup-p2p",
    "hold",
    "connect-concurrency",
    "connect-timeout",
    "phase-timeout",
    "pids",
    "stats",
    "label",
  ]);
  for (const key of values.keys()) {
    if (!known.has(key)) throw new Error(`unknown option --${key}`);
  }
  const num = (key: string, fallback: number) => {
    const n = Number(values.get(key) ?? fallback);
    if (!Number.isFinite(n) || n < 0) throw new Error(`bad --${key}`);
    return Math.floor(n);
  };
  const urls = (values.get("url") ?? "").split(",").filter(Boolean);
  if (urls.length === 0) throw new Error("need at least one --url");
  for (const url of urls) {
    const host = new URL(url).hostname;
    if (!/^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\])$/.test(host)) {
      throw new Error(`refusing non-loopback target ${url}`);
    }
  }
  const client = (values.get("client") ?? "ffi") as Transport;
  if (!["ffi", "tcp", "native"].includes(client)) {
    throw new Error("--client must be ffi, tcp or native");
  }
  let clients = Math.max(num("clients", 2000), urls.length * 2);
  clients -= clients % urls.length; // every server gets the same count
  return {
    urls,
    client,
    srcAddrs: (values.get("src-addrs") ?? "").split(",").filter(Boolean)
      .flatMap(expandAddresses),
    clients,
    size: num("size", 64),
    bcast: num("bcast", 200),
    bcastWindows: [
      ...new Set(
        (values.get("bcast-window") ?? "4,16").split(",").map((w) => {
          const n = Number(w);
          if (!Number.isInteger(n) || n < 1) {
            throw new Error(`bad --bcast-window ${w}`);
          }
          return n;
        }),
      ),
    ],
    bcastLat: num("bcast-lat", 50),
    p2p: num("p2p", 20000),
    p2pWindow: Math.max(1, num("p2p-window", 200)),
    count: num("count", 0),
    warmupBcast: num("warmup-bcast", 10),
    warmupP2p: num("warmup-p2p", 2000),
    holdS: num("hold", 0),
    connectConcurrency: Math.max(1, num("connect-concurrency", 200)),
    connectTimeoutS: num("connect-timeout", 60),
    phaseTimeoutS: num("phase-timeout", 60),
    pids: (values.get("pids") ?? "").split(",").filter(Boolean).map((s) => {
      const [name = s, pid = s] = s.split(":");
      return { name, pid: Number(pid) };
    }),
    stats: values.has("stats"),
    label: values.get("label") ?? "",
  };
}

let options: Options;
try {
  options = parseOptions(Deno.args);
} catch (error) {
  console.error(`load: ${(error as Error).message}`);
  Deno.exit(2);
}
const C = options.clients;
function log(message: string): void {
  console.error(`[load ${options.label}] ${message}`);
}
function progress(message: string): void {
  console.error(`progress: ${message}`);
}

// ---------------------------------------------------------------- cpu, memory

const CLK_TCK = 100; // USER_HZ on Linux

function cpuTicks(pid: number | "self"): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]); // utime + stime
  } catch {
    return NaN;
  }
}

/** Busy ticks of the whole machine (all CPUs). */
function machineBusyTicks(): number {
  try {
    const line = Deno.readTextFileSync("/proc/stat").split("\n")[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system irq softirq steal
    return f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!;
  } catch {
    return NaN;
  }
}

/** Resident memory of a process in KiB. */
function rssKib(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

interface CpuSnap {
  t: number;
  ticks: Record<string, number>;
  machine: number;
}

function cpuSnap(): CpuSnap {
  const ticks: Record<string, number> = { load: cpuTicks("self") };
  for (const p of options.pids) ticks[p.name] = cpuTicks(p.pid);
  return { t: performance.now(), ticks, machine: machineBusyTicks() };
}

/**
 * CPU use of each process in % of one core between two snapshots, plus
 * "other": the machine's busy CPU that none of them used (noise).
 */
function cpuPct(a: CpuSnap, b: CpuSnap): Record<string, number> {
  const wallS = (b.t - a.t) / 1000;
  const out: Record<string, number> = {};
  let ours = 0;
  for (const [key, before] of Object.entries(a.ticks)) {
    const d = (b.ticks[key] ?? NaN) - before;
    ours += d;
    out[key] = round1(d / CLK_TCK / wallS * 100);
  }
  out.other = round1((b.machine - a.machine - ours) / CLK_TCK / wallS * 100);
  return out;
}

function serverCpuS(a: CpuSnap, b: CpuSnap): number {
  let total = 0;
  for (const p of options.pids) {
    total += ((b.ticks[p.name] ?? NaN) - (a.ticks[p.name] ?? NaN)) / CLK_TCK;
  }
  return total;
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}
function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

// ---------------------------------------------------------------- payload
// [op u8][L u8][target id, L bytes][send time f64 LE][seq u32 LE][phase u8]
// then zero padding up to the size.

const OP_BCAST = 0x42, OP_P2P = 0x50;
const encoder = new TextEncoder();
const HEADER_TAIL = 13;

function makePayload(
  op: number,
  idBytes: Uint8Array,
  size: number,
  seq: number,
  phase: number,
): Uint8Array {
  const L = idBytes.length;
  const u8 = new Uint8Array(Math.max(size, 2 + L + HEADER_TAIL));
  u8[0] = op;
  u8[1] = L;
  u8.set(idBytes, 2);
  const dv = new DataView(u8.buffer);
  dv.setFloat64(2 + L, performance.now(), true);
  dv.setUint32(2 + L + 8, seq, true);
  u8[2 + L + 12] = phase;
  return u8;
}

// ---------------------------------------------------------------- clients

interface Client {
  readonly i: number;
  readonly server: number;
  conn: WsConn;
  id: string;
  idBytes: Uint8Array;
  /** Waits for a text reply to a command ("count", "stats"). */
  reply: ((text: string) => void) | undefined;
}

const clients: Client[] = new Array(C);
let strays = 0;
let shuttingDown = false;
let unexpectedCloses = 0;

interface Phase {
  id: number;
  onReceive(
    c: Client,
    op: number,
    seq: number,
    latency: number,
    now: number,
  ): void;
}
let phase: Phase | null = null;

function onPayload(c: Client, u8: Uint8Array): void {
  const now = performance.now();
  if (u8.length < 2) return void strays++;
  const off = 2 + u8[1]!;
  if (u8.length < off + HEADER_TAIL) return void strays++;
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const sentAt = dv.getFloat64(off, true);
  const seq = dv.getUint32(off + 8, true);
  const id = u8[off + 12];
  if (!phase || id !== phase.id) return void strays++;
  phase.onReceive(c, u8[0]!, seq, now - sentAt, now);
}

function connectOne(i: number): Promise<void> {
  const server = i % options.urls.length;
  return new Promise((resolve, reject) => {
    let ready = false, failed = false;
    const c: Client = {
      i,
      server,
      conn: null as unknown as WsConn,
      id: "",
      idBytes: new Uint8Array(0),
      reply: undefined,
    };
    const fail = (error: Error) => {
      if (ready || failed) return;
      failed = true;
      clearTimeout(timer);
      try {
        c.conn?.close();
      } catch { /* ignore */ }
      reject(error);
    };
    const timer = setTimeout(
      () =>
        fail(new Error(`client ${i}: no id after ${options.connectTimeoutS}s`)),
      options.connectTimeoutS * 1000,
    );
    const src = options.srcAddrs.length
      ? options.srcAddrs[
        Math.floor(i / options.urls.length) % options.srcAddrs.length
      ]
      : undefined;
    connectWs(options.client, options.urls[server]!, {
      onText(text) {
        if (!ready) {
          if (!text.startsWith("id:")) return;
          c.id = text.slice(3);
          c.idBytes = encoder.encode(c.id);
          if (c.idBytes.length > 255) {
            return fail(new Error(`client id longer than 255 bytes: ${c.id}`));
          }
          ready = true;
          clearTimeout(timer);
          clients[i] = c;
          resolve();
        } else if (c.reply !== undefined) {
          const reply = c.reply;
          c.reply = undefined;
          reply(text);
        }
      },
      onBinary(u8) {
        onPayload(c, u8);
      },
      onClose(why) {
        if (!ready) fail(new Error(`client ${i}: closed before id (${why})`));
        else if (!shuttingDown) {
          unexpectedCloses++;
          if (unexpectedCloses <= 3) {
            log(`client ${i} closed unexpectedly: ${why}`);
          }
        }
      },
    }, src).then((conn) => {
      c.conn = conn;
      if (failed) return conn.close();
      conn.start();
    }, (error) => fail(new Error(`client ${i}: ${(error as Error).message}`)));
  });
}

async function connectAll(): Promise<number> {
  const t0 = performance.now();
  let next = 0, done = 0;
  let failed: Error | null = null;
  const ticker = setInterval(
    () => progress(`connecting ${done}/${C}`),
    500,
  );
  async function worker() {
    while (next < C && !failed) {
      const i = next++;
      try {
        await connectOne(i);
        done++;
      } catch (error) {
        failed ??= error as Error;
      }
    }
  }
  try {
    await Promise.all(
      Array.from({ length: Math.min(options.connectConcurrency, C) }, worker),
    );
  } finally {
    clearInterval(ticker);
  }
  if (failed) throw failed;
  return performance.now() - t0;
}

/** Sends a text command from a client and waits for its reply. */
function ask(c: Client, text: string, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      c.reply = undefined;
      reject(new Error(`no answer to "${text}" within ${timeoutMs} ms`));
    }, timeoutMs);
    c.reply = (reply) => {
      clearTimeout(timer);
      resolve(reply);
    };
    c.conn.send(text);
  });
}

type Counters = { unaryCalls: number; deliveries: number; batches: number };

/** Sums the peer counters of every server, from its /metrics. */
async function readCounters(): Promise<Counters | undefined> {
  if (!options.stats) return undefined;
  const sum: Counters = { unaryCalls: 0, deliveries: 0, batches: 0 };
  for (const url of options.urls) {
    const metrics = new URL("/metrics", url.replace(/^ws/, "http"));
    const text = await (await fetch(metrics)).text();
    const value = (pattern: RegExp) =>
      [...text.matchAll(pattern)].reduce((n, m) => n + Number(m[1]), 0);
    sum.unaryCalls += value(
      /^wsgate_peer_rpc_duration_seconds_count\{kind="unary"\} (\S+)$/gm,
    );
    sum.deliveries += value(/^wsgate_peer_deliveries_total (\S+)$/gm);
    sum.batches += value(/^wsgate_peer_batches_total\{[^}]*\} (\S+)$/gm);
  }
  return sum;
}

function counterDelta(
  a: Counters | undefined,
  b: Counters | undefined,
): Counters | undefined {
  if (a === undefined || b === undefined) return undefined;
  return {
    unaryCalls: b.unaryCalls - a.unaryCalls,
    deliveries: b.deliveries - a.deliveries,
    batches: b.batches - a.batches,
  };
}

// ---------------------------------------------------------------- stats

function percentiles(a: Float64Array, n: number) {
  if (n === 0) return { p50_ms: null, p99_ms: null, max_ms: null };
  const s = a.slice(0, n).sort();
  const q = (p: number) => round3(s[Math.min(n - 1, Math.floor(p * (n - 1)))]!);
  return { p50_ms: q(0.5), p99_ms: q(0.99), max_ms: round3(s[n - 1]!) };
}

function prefixed(prefix: string, o: Record<string, unknown>) {
  return Object.fromEntries(
    Object.entries(o).map(([k, v]) => [prefix + k, v]),
  );
}

// ---------------------------------------------------------------- phases

type Result = Record<string, unknown>;

function runBcast(
  phaseId: number,
  m: number,
  window: number,
  record: boolean,
): Promise<Result> {
  return new Promise((resolve) => {
    const counts = new Uint32Array(m);
    const sendT = new Float64Array(m);
    const complete = new Float64Array(m); // send -> C-th delivery
    const lat = new Float64Array(m * C);
    let nLat = 0, sent = 0, done = 0, inflight = 0, dups = 0;
    let tFirst = 0, tLast = 0;
    const s0 = cpuSnap();
    let finished = false;
    const ticker = record
      ? setInterval(() => progress(`broadcast W${window} ${done}/${m}`), 500)
      : undefined;
    const finish = (timedOut: boolean) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      clearInterval(ticker);
      phase = null;
      const s1 = cpuSnap();
      const durMs = tLast - tFirst;
      resolve({
        broadcasts: m,
        window,
        expected: m * C,
        delivered: nLat,
        dups,
        timed_out: timedOut,
        duration_ms: round1(durMs),
        msgs_per_s: durMs > 0 ? Math.round(nLat / (durMs / 1000)) : null,
        ...(record ? percentiles(lat, nLat) : {}),
        ...(record ? prefixed("all_", percentiles(complete, done)) : {}),
        cpu_pct: cpuPct(s0, s1),
        server_cpu_us_per_msg: options.pids.length && nLat
          ? round3(serverCpuS(s0, s1) * 1e6 / nLat)
          : null,
      });
    };
    const timer = setTimeout(() => finish(true), options.phaseTimeoutS * 1000);
    const pump = () => {
      while (inflight < window && sent < m) {
        const p = makePayload(
          OP_BCAST,
          new Uint8Array(0),
          options.size,
          sent,
          phaseId,
        );
        sendT[sent] = performance.now();
        if (sent === 0) tFirst = sendT[0]!;
        clients[0]!.conn.send(p);
        sent++;
        inflight++;
      }
    };
    phase = {
      id: phaseId,
      onReceive(_c, op, seq, latency, now) {
        if (op !== OP_BCAST || seq >= m) return void strays++;
        const n = ++counts[seq]!;
        if (n > C) return void dups++;
        lat[nLat++] = latency;
        tLast = now;
        if (n === C) {
          complete[done] = now - sendT[seq]!;
          inflight--;
          done++;
          if (done === m) finish(false);
          else pump();
        }
      },
    };
    if (m === 0) return finish(false);
    pump();
  });
}

function runP2p(phaseId: number, n: number, record: boolean): Promise<Result> {
  return new Promise((resolve) => {
    const partner = (i: number) => (i + 1) % C;
    const lat = new Float64Array(n);
    const seen = new Uint8Array(n);
    let sent = 0, done = 0, inflight = 0, dups = 0, wrong = 0;
    let tFirst = 0, tLast = 0;
    const s0 = cpuSnap();
    let finished = false;
    const ticker = record
      ? setInterval(() => progress(`point-to-point ${done}/${n}`), 500)
      : undefined;
    const finish = (timedOut: boolean) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      clearInterval(ticker);
      phase = null;
      const s1 = cpuSnap();
      const durMs = tLast - tFirst;
      resolve({
        messages: n,
        window: options.p2pWindow,
        delivered: done,
        dups,
        misrouted: wrong,
        timed_out: timedOut,
        duration_ms: round1(durMs),
        msgs_per_s: durMs > 0 ? Math.round(done / (durMs / 1000)) : null,
        ...(record ? percentiles(lat, done) : {}),
        cpu_pct: cpuPct(s0, s1),
        server_cpu_us_per_msg: options.pids.length && done
          ? round3(serverCpuS(s0, s1) * 1e6 / done)
          : null,
      });
    };
    const timer = setTimeout(() => finish(true), options.phaseTimeoutS * 1000);
    const pump = () => {
      while (inflight < options.p2pWindow && sent < n) {
        const from = clients[sent % C]!;
        const to = clients[partner(from.i)]!;
        const p = makePayload(OP_P2P, to.idBytes, options.size, sent, phaseId);
        if (sent === 0) tFirst = performance.now();
        from.conn.send(p);
        sent++;
        inflight++;
      }
    };
    phase = {
      id: phaseId,
      onReceive(c, op, seq, latency, now) {
        if (op !== OP_P2P || seq >= n) return void strays++;
        if (seen[seq]) return void dups++;
        seen[seq] = 1;
        if (c.i !== partner(seq % C)) wrong++;
        lat[done++] = latency;
        tLast = now;
        inflight--;
        if (done === n) finish(false);
        else pump();
      },
    };
    if (n === 0) return finish(false);
    pump();
  });
}

async function runCount(k: number): Promise<Result> {
  const lat = new Float64Array(k);
  const s0 = cpuSnap();
  const t0 = performance.now();
  let last = "";
  for (let i = 0; i < k; i++) {
    if (i % 50 === 0) progress(`getAllClientCount ${i}/${k}`);
    const t = performance.now();
    last = await ask(clients[0]!, "count");
    lat[i] = performance.now() - t;
  }
  const durMs = performance.now() - t0;
  const s1 = cpuSnap();
  return {
    calls: k,
    answer: last,
    correct: last === `count:${C}`,
    calls_per_s: Math.round(k / (durMs / 1000)),
    ...percentiles(lat, k),
    cpu_pct: cpuPct(s0, s1),
    server_cpu_us_per_call: options.pids.length
      ? round3(serverCpuS(s0, s1) * 1e6 / k)
      : null,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------- main

const result: Result = {
  label: options.label,
  client: options.client,
  urls: options.urls,
  clients: C,
  size: options.size,
};
let exitCode = 0;

/**
 * Runs one phase, with the RPC counters around its measured part: `fn`
 * calls `measure()` after its warm-up.
 */
async function section(
  name: string,
  fn: (measure: () => Promise<void>) => Promise<Result>,
) {
  try {
    let before: Counters | undefined;
    const r = await fn(async () => {
      before = await readCounters();
    });
    const rpc = counterDelta(before, await readCounters());
    if (rpc !== undefined) r.rpc = rpc;
    result[name] = r;
    log(`${name} done ${JSON.stringify(r)}`);
    if (r.timed_out) exitCode = 3;
  } catch (error) {
    result[name] = { error: String((error as Error).message ?? error) };
    log(`${name} failed: ${(error as Error).message}`);
    exitCode = 3;
  }
  await sleep(300);
}

function checkWarmup(w: Result, what: string): void {
  if (w.timed_out) {
    throw new Error(
      `${what} warm-up timed out: delivered ${w.delivered} of ${
        w.expected ?? w.messages
      }`,
    );
  }
}

function rssAll(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of options.pids) out[p.name] = rssKib(p.pid);
  return out;
}

try {
  log(`connecting ${C} clients to ${options.urls.length} server(s)`);
  const rssBefore = rssAll();
  const s0 = cpuSnap();
  const connectMs = await connectAll();
  const s1 = cpuSnap();
  progress(`connected ${C} clients; settling`);
  await sleep(Math.max(1000, options.holdS * 1000));
  result.connect = {
    ms: round1(connectMs),
    per_s: Math.round(C / (connectMs / 1000)),
    cpu_pct: cpuPct(s0, s1),
    server_cpu_us_per_connect: options.pids.length
      ? round3(serverCpuS(s0, s1) * 1e6 / C)
      : null,
    rss_kib_before: rssBefore,
    rss_kib_after: rssAll(),
  };
  log(`connected in ${round1(connectMs)} ms`);

  if (options.bcast > 0) {
    let best: Result | null = null;
    for (const [k, w] of options.bcastWindows.entries()) {
      const name = `bcast_w${w}`;
      await section(name, async (measure) => {
        if (k === 0) {
          checkWarmup(
            await runBcast(
              1,
              Math.min(options.warmupBcast, options.bcast),
              w,
              false,
            ),
            "broadcast",
          );
          await sleep(200);
        }
        await measure();
        return runBcast(10 + k, options.bcast, w, true);
      });
      const r = result[name] as Result;
      if (r.error || r.timed_out) {
        result.bcast = r;
        break;
      }
      if (!best || (r.msgs_per_s as number) > (best.msgs_per_s as number)) {
        best = r;
      }
    }
    if (best && !result.bcast) result.bcast = best;
  }
  if (options.bcastLat > 0) {
    await section("bcast_lat", async (measure) => {
      await measure();
      return runBcast(5, options.bcastLat, 1, true);
    });
  }
  if (options.p2p > 0) {
    await section("p2p", async (measure) => {
      checkWarmup(
        await runP2p(3, Math.min(options.warmupP2p, options.p2p), false),
        "point-to-point",
      );
      await sleep(200);
      await measure();
      return runP2p(4, options.p2p, true);
    });
  }
  if (options.count > 0) {
    await section("count", async (measure) => {
      await measure();
      return runCount(options.count);
    });
  }
} catch (error) {
  result.error = String((error as Error).message ?? error);
  exitCode = 2;
}
result.strays = strays;
result.client_io = { ...STATS };
result.unexpected_closes = unexpectedCloses;

// Close every client (bounded wait), then print the one JSON line.
shuttingDown = true;
progress("closing clients");
for (const c of clients) {
  try {
    c?.conn.close();
  } catch { /* ignore */ }
}
const closeDeadline = performance.now() + 5000;
while (
  performance.now() < closeDeadline && clients.some((c) => c && !c.conn.closed)
) {
  await sleep(50);
}
console.log(JSON.stringify(result));
Deno.exit(exitCode);
