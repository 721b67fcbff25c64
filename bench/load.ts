// The load generator of the benchmarks (bench/main.ts, bench/peers.ts): one
// process with C client WebSockets, spread round-robin over the server
// URLs, that measures phases one after the other and prints ONE JSON line
// on stdout. Progress goes to stderr as "progress: ..." lines, the rest of
// its log as plain lines.
//
// It speaks the bench app protocol (bench/README.md) in one of two
// wrappings:
//
//   --protocol app       plain WebSocket messages (raw Deno, wsgate): the
//                        server's first text message is "id:<clientId>",
//                        and the test frames are binary messages.
//   --protocol socketio  Socket.IO v5 over Engine.IO v4, websocket transport
//                        only: the client id is the socket id of the
//                        namespace connect answer, and every test frame is
//                        the binary attachment of an event "f" (a text
//                        packet `451-["f",{"_placeholder":true,"num":0}]`
//                        followed by the frame as a binary message).
//   --protocol wsgate.v1 the app protocol inside wsgate's own client
//                        protocol (docs/protocol.md): the subprotocol
//                        wsgate.v1, a hello first, text sent as ":" + text,
//                        every data frame from the service prefixed with
//                        its sequence number (text "<seq>:", binary a LEB128
//                        varint), an ack every 64 frames or 1 s after the
//                        first unacknowledged one, a ping every 20 s. The
//                        result's "v1" says whether the sequence numbers had
//                        gaps.
//
// The test frame (little-endian), written and read only here; a server
// looks at bytes 0 .. 2+L and relays the frame unchanged:
//
//   [0] 'B' broadcast | 'P' point-to-point    [1] L (0 for 'B')
//   [2, 2+L) target client id (UTF-8)         [2+L] phase tag (u8)
//   [3+L, 7+L) sequence number (u32)          [7+L, 15+L) send time (f64,
//   this process's performance.now())         then zeros up to --size bytes
//
// Every latency is measured with this process's clock, so no clocks of
// different processes are compared.
//
// Phases, each only when asked for, in this order:
//   connect    all clients connect and get their ids (--connect-concurrency
//              handshakes at a time); then --hold seconds idle.
//   bcast_wW   for each W of --bcast-window: client 0 sends --bcast 'B'
//              frames, at most W whose delivery to all C clients is not
//              complete; "bcast" is the W with the most deliveries/s.
//   bcast_lat  --bcast-lat broadcasts one at a time: the fan-out time.
//   p2p        --p2p 'P' frames with at most --p2p-window in flight; frame
//              k goes from client k mod C to client (k mod C) + 1 mod C,
//              which lives on the next URL.
//   count      --count "count" commands from client 0, one at a time
//              (protocol app; bench/app.ts answers "count:<n>").
//   uid_one, group_one, uid_all, group_all (--keyed N, protocol app)
//              first client 0 (URL 1) and, for each URL k, client k bind
//              the uid "u-all" and join the group "g-all"; client N+1 (on
//              URL 2 when there are N ≥ 2 URLs) binds "u-one" and joins
//              "g-one", each acknowledged once the call resolved. Then
//              client 0 sends N 'U' / 'G' frames (sendToUid,
//              sendToGroup) to each key, at most --keyed-window whose
//              delivery to every holder is not complete.
//   online_one, online_none (--online N, protocol app) N isUidOnline
//              calls from client 0, one at a time, for "u-one" (held on
//              one other service) and for a uid nobody holds.
// --smoke replaces the phases with a check of the routing: every id is
// distinct, a broadcast from the first and from the last client reaches
// every client exactly once, and each client's point-to-point frame reaches
// exactly its target. It prints {"smoke":{"ok":...}} and exits 1 on failure.
//
// Each measured phase reports cpu_pct: the CPU of this process ("load"), of
// each --pids process and "other" (busy machine CPU that none of them used:
// noise from other work), in % of one core; and server_cpu_us_per_msg, the
// CPU time of all --pids processes per delivery.
//
// usage: deno run -A bench/load.ts --url ws://127.0.0.1:P/[,ws://...] [options]
//   --protocol app|socketio|wsgate.v1 (app)  --client ffi|tcp|native (ffi)
//   --clients C (2000)  --size S (64)  --src-addrs 127.0.0.2-127.0.0.5
//   --bcast M (200)  --bcast-window W,W (4,16)  --bcast-lat N (50)
//   --p2p N (20000)  --p2p-window W (200)  --count N (0)
//   --keyed N (0)  --keyed-window W (200)  --online N (0)
//   --warmup-bcast N (10)  --warmup-p2p N (2000)  --hold S (0)
//   --connect-concurrency N (200)  --connect-timeout S (60)
//   --phase-timeout S (60)  --deadline S (600: the whole run)
//   --pids name:pid,...  --stats (read /metrics counters around each phase)
//   --label TEXT  --smoke
//   --open-links (before the keyed phases, a client on every URL sends one
//                broadcast: every service then has a link to every other)

import {
  clientCounters,
  type ClientKind,
  type ClientSocket,
  openClient,
} from "./ws_client.ts";
import {
  machineTicks,
  processTicks,
  residentKib,
  TICKS_PER_SECOND,
} from "./proc.ts";

// ---------------------------------------------------------------- options

type Protocol = "app" | "socketio" | "wsgate.v1";

interface Settings {
  urls: string[];
  protocol: Protocol;
  client: ClientKind;
  localAddresses: string[];
  clients: number;
  size: number;
  bcast: number;
  bcastWindows: number[];
  bcastLat: number;
  p2p: number;
  p2pWindow: number;
  count: number;
  keyed: number;
  keyedWindow: number;
  online: number;
  warmupBcast: number;
  warmupP2p: number;
  holdS: number;
  connectConcurrency: number;
  connectTimeoutS: number;
  phaseTimeoutS: number;
  deadlineS: number;
  pids: { name: string; pid: number }[];
  stats: boolean;
  smoke: boolean;
  openLinks: boolean;
  label: string;
}

const VALUED = [
  "url",
  "protocol",
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
  "keyed",
  "keyed-window",
  "online",
  "warmup-bcast",
  "warmup-p2p",
  "hold",
  "connect-concurrency",
  "connect-timeout",
  "phase-timeout",
  "deadline",
  "pids",
  "label",
];
const SWITCHES = ["stats", "smoke", "open-links"];

/** "127.0.0.2-127.0.0.5,127.0.1.2" as a list of loopback addresses. */
function loopbackRange(spec: string): string[] {
  const out: string[] = [];
  for (const part of spec.split(",").filter(Boolean)) {
    const [from = "", to = from] = part.split("-");
    const a = /^127\.(\d+)\.(\d+)\.(\d+)$/.exec(from);
    const b = /^127\.(\d+)\.(\d+)\.(\d+)$/.exec(to);
    if (!a || !b || a[1] !== b[1] || a[2] !== b[2]) {
      throw new Error(`--src-addrs: ${part} is not 127.x.y.A[-127.x.y.B]`);
    }
    for (let k = Number(a[3]); k <= Number(b[3]) && k < 256; k++) {
      out.push(`127.${a[1]}.${a[2]}.${k}`);
    }
  }
  return out;
}

function parseSettings(argv: readonly string[]): Settings {
  const given = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(arg);
    if (!m) throw new Error(`unexpected argument ${arg}`);
    const key = m[1]!;
    if (SWITCHES.includes(key)) {
      given.set(key, "yes");
    } else if (VALUED.includes(key)) {
      const value = m[2] ?? argv[++i];
      if (value === undefined) throw new Error(`--${key} needs a value`);
      given.set(key, value);
    } else {
      throw new Error(`unknown option --${key}`);
    }
  }
  const count = (key: string, fallback: number, least = 0) => {
    const value = Number(given.get(key) ?? fallback);
    if (!Number.isFinite(value) || value < least) {
      throw new Error(`--${key} must be a number of at least ${least}`);
    }
    return Math.floor(value);
  };
  const urls = (given.get("url") ?? "").split(",").filter(Boolean);
  if (urls.length === 0) throw new Error("--url is required");
  for (const url of urls) {
    const host = new URL(url).hostname;
    if (!/^127\.\d+\.\d+\.\d+$|^localhost$|^\[::1\]$/.test(host)) {
      throw new Error(`only loopback targets are allowed, not ${url}`);
    }
  }
  const protocol = given.get("protocol") ?? "app";
  if (
    protocol !== "app" && protocol !== "socketio" && protocol !== "wsgate.v1"
  ) {
    throw new Error("--protocol must be app, socketio or wsgate.v1");
  }
  const client = given.get("client") ?? "ffi";
  if (client !== "ffi" && client !== "tcp" && client !== "native") {
    throw new Error("--client must be ffi, tcp or native");
  }
  // The same number of clients on every URL, and at least two per URL.
  let clients = Math.max(count("clients", 2000), 2 * urls.length);
  clients -= clients % urls.length;
  const windows = (given.get("bcast-window") ?? "4,16").split(",").map(
    (w) => {
      const n = Number(w);
      if (!Number.isInteger(n) || n < 1) throw new Error(`bad window ${w}`);
      return n;
    },
  );
  return {
    urls,
    protocol,
    client,
    localAddresses: loopbackRange(given.get("src-addrs") ?? ""),
    clients,
    size: count("size", 64),
    bcast: count("bcast", 200),
    bcastWindows: [...new Set(windows)],
    bcastLat: count("bcast-lat", 50),
    p2p: count("p2p", 20000),
    p2pWindow: count("p2p-window", 200, 1),
    count: count("count", 0),
    keyed: count("keyed", 0),
    keyedWindow: count("keyed-window", 200, 1),
    online: count("online", 0),
    warmupBcast: count("warmup-bcast", 10),
    warmupP2p: count("warmup-p2p", 2000),
    holdS: count("hold", 0),
    connectConcurrency: count("connect-concurrency", 200, 1),
    connectTimeoutS: count("connect-timeout", 60, 1),
    phaseTimeoutS: count("phase-timeout", 60, 1),
    deadlineS: count("deadline", 600, 1),
    pids: (given.get("pids") ?? "").split(",").filter(Boolean).map((item) => {
      const [name = "", pid = ""] = item.split(":");
      if (!name || !/^\d+$/.test(pid)) throw new Error(`bad --pids ${item}`);
      return { name, pid: Number(pid) };
    }),
    stats: given.has("stats"),
    smoke: given.has("smoke"),
    openLinks: given.has("open-links"),
    label: given.get("label") ?? "",
  };
}

let settings: Settings;
try {
  settings = parseSettings(Deno.args);
} catch (error) {
  console.error(`load: ${(error as Error).message}`);
  Deno.exit(2);
}
const C = settings.clients;

function log(text: string): void {
  console.error(`[load ${settings.label}] ${text}`);
}

function progress(text: string): void {
  console.error(`progress: ${text}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const round1 = (x: number) => Math.round(x * 10) / 10;
const round3 = (x: number) => Math.round(x * 1000) / 1000;

// ---------------------------------------------------------------- CPU

interface Sample {
  at: number;
  ticks: Map<string, number>;
  machine: number;
}

function sample(): Sample {
  const ticks = new Map<string, number>([["load", processTicks("self")]]);
  for (const { name, pid } of settings.pids) ticks.set(name, processTicks(pid));
  return { at: performance.now(), ticks, machine: machineTicks().busy };
}

/** CPU of each process between two samples, in % of one core; "other". */
function cpuPct(a: Sample, b: Sample): Record<string, number> {
  const seconds = (b.at - a.at) / 1000;
  const pct = (ticks: number) =>
    round1(ticks / TICKS_PER_SECOND / seconds * 100);
  const out: Record<string, number> = {};
  let known = 0;
  for (const [name, before] of a.ticks) {
    const used = (b.ticks.get(name) ?? NaN) - before;
    known += used;
    out[name] = pct(used);
  }
  out.other = pct(b.machine - a.machine - known);
  return out;
}

/** CPU seconds of the server processes between two samples. */
function serverSeconds(a: Sample, b: Sample): number {
  let ticks = 0;
  for (const { name } of settings.pids) {
    ticks += (b.ticks.get(name) ?? NaN) - (a.ticks.get(name) ?? NaN);
  }
  return ticks / TICKS_PER_SECOND;
}

function perUnitUs(a: Sample, b: Sample, units: number): number | null {
  return settings.pids.length > 0 && units > 0
    ? round3(serverSeconds(a, b) * 1e6 / units)
    : null;
}

/**
 * Server CPU seconds per second while nothing is sent (heartbeats,
 * pings, timers), measured before the keyed phases; 0 until then.
 */
let idleServerCpu = 0;

/**
 * Measures the server CPU over `ms` of quiet; the first measurement sets
 * {@linkcode idleServerCpu}.
 */
async function measureIdleCpu(ms: number): Promise<Json> {
  const a = sample();
  await sleep(ms);
  const b = sample();
  const idle = serverSeconds(a, b) / ((b.at - a.at) / 1000);
  if (idleServerCpu === 0) idleServerCpu = idle;
  return {
    ms: round1(b.at - a.at),
    server_cpu_pct: round1(idle * 100),
    cpu_pct: cpuPct(a, b),
  };
}

/** Like perUnitUs, less the idle server CPU over the same time. */
function perUnitNetUs(a: Sample, b: Sample, units: number): number | null {
  if (settings.pids.length === 0 || units === 0) return null;
  const busy = serverSeconds(a, b) - idleServerCpu * (b.at - a.at) / 1000;
  return round3(busy * 1e6 / units);
}

function residentAll(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const { name, pid } of settings.pids) out[name] = residentKib(pid);
  return out;
}

// ---------------------------------------------------------------- frames

const OP_BROADCAST = 0x42;
const OP_POINT = 0x50;
const OP_UID = 0x55;
const OP_GROUP = 0x47;
/** Bytes after the target id: phase tag, sequence number, send time. */
const TAIL = 13;
const encoder = new TextEncoder();
const NO_ID = new Uint8Array(0);

function testFrame(
  op: number,
  target: Uint8Array,
  tag: number,
  seq: number,
): Uint8Array {
  const at = 2 + target.length;
  const frame = new Uint8Array(Math.max(settings.size, at + TAIL));
  frame[0] = op;
  frame[1] = target.length;
  frame.set(target, 2);
  frame[at] = tag;
  const view = new DataView(frame.buffer);
  view.setUint32(at + 1, seq, true);
  view.setFloat64(at + 5, performance.now(), true);
  return frame;
}

// ---------------------------------------------------------------- clients

/** One client of the run. */
interface Client {
  readonly index: number;
  /** Index of its URL. */
  readonly node: number;
  socket: ClientSocket | undefined;
  id: string;
  idBytes: Uint8Array;
  /** Socket.IO: binary attachments announced and not received yet. */
  attachments: number;
  /** Waits for the answer to a text command. */
  answer: ((text: string) => void) | undefined;
  /** wsgate.v1: the sequence number of the last data frame received. */
  seq: number;
  /** wsgate.v1: data frames received and not acknowledged yet. */
  unacked: number;
  /** wsgate.v1: when the first of them arrived. */
  firstUnackedAt: number;
}

/** What a phase does with each test frame that arrives. */
interface Receiver {
  tag: number;
  frame(client: Client, op: number, seq: number, latency: number): void;
}

const clients: Client[] = [];
let receiver: Receiver | undefined;
let strays = 0;
let closing = false;
let lostClients = 0;

function received(client: Client, frame: Uint8Array): void {
  const now = performance.now();
  const at = frame.length >= 2 ? 2 + frame[1]! : 0;
  if (at === 0 || frame.length < at + TAIL) return void strays++;
  const view = new DataView(frame.buffer, frame.byteOffset, frame.length);
  const tag = frame[at]!;
  if (receiver === undefined || receiver.tag !== tag) return void strays++;
  const seq = view.getUint32(at + 1, true);
  receiver.frame(client, frame[0]!, seq, now - view.getFloat64(at + 5, true));
}

const SIO_FRAME_HEADER = '451-["f",{"_placeholder":true,"num":0}]';

/** Sends a test frame in the wrapping of --protocol. */
function sendFrame(client: Client, frame: Uint8Array): void {
  if (settings.protocol === "socketio") {
    client.socket!.sendAll([SIO_FRAME_HEADER, frame]);
  } else {
    client.socket!.send(frame);
  }
}

/**
 * Handles a text message; calls `ready` with the client id once the
 * protocol has told it.
 */
function onText(
  client: Client,
  socket: ClientSocket,
  text: string,
  ready: (id: string) => void,
  fail: (why: string) => void,
  protocol: Protocol = settings.protocol,
): void {
  if (protocol === "wsgate.v1") {
    return v1Text(client, socket, text, ready, fail);
  }
  if (protocol === "app") {
    if (client.id === "") {
      if (text.startsWith("id:")) ready(text.slice(3));
    } else if (client.answer !== undefined) {
      const answer = client.answer;
      client.answer = undefined;
      answer(text);
    }
    return;
  }
  // Engine.IO packet type, then (type 4 = message) the Socket.IO packet.
  switch (text[0]) {
    case "0": // open: join the main namespace
      socket.send("40");
      return;
    case "2": // ping
      socket.send("3");
      return;
    case "1": // close
      return fail("engine.io close packet");
    case "4":
      break;
    default:
      return;
  }
  if (text.startsWith("40")) {
    const sid = (JSON.parse(text.slice(2) || "{}") as { sid?: unknown }).sid;
    if (typeof sid === "string") ready(sid);
    else fail(`connect packet without sid: ${text}`);
  } else if (text.startsWith("44")) {
    fail(`namespace refused: ${text}`);
  } else if (text[1] === "5") {
    // A binary event: "45<n>-..." announces n attachments.
    client.attachments += Number(/^45(\d+)-/.exec(text)?.[1] ?? 0);
  }
}

// ---------------------------------------------------------------- wsgate.v1

const V1 = settings.protocol === "wsgate.v1";
const V1_HELLO = '{"type":"hello"}';
/** Frames that may stay unacknowledged, and for how long (the contract). */
const V1_ACK_EVERY = 64;
const V1_ACK_AFTER_MS = 1000;
const V1_PING_EVERY_MS = 20_000;

/**
 * Bytes on the wire from the services to the clients, of data frames
 * (WebSocket header included), and of the acknowledgements the clients
 * send back (masked: 4 bytes of key in the header).
 */
const wire = { frames: 0, bytes: 0, acks: 0, ackBytes: 0 };
const v1Stats = { seq_gaps: 0, acks: 0, pings: 0, pongs: 0, welcomes: 0 };

/** Size of the header of an unmasked frame of `n` bytes (server to client). */
function serverHeader(n: number): number {
  return n < 126 ? 2 : n < 65536 ? 4 : 10;
}

/** Counts data frame `seq` of `client`; acknowledges every 64. */
function v1Data(client: Client, seq: number): void {
  if (seq !== client.seq + 1) v1Stats.seq_gaps++;
  client.seq = seq;
  if (client.unacked++ === 0) client.firstUnackedAt = performance.now();
  if (client.unacked >= V1_ACK_EVERY) v1Control(client, "ack");
}

/** Sends an ack or a ping, which acknowledges everything received. */
function v1Control(client: Client, type: "ack" | "ping"): void {
  const text = `{"type":"${type}","seq":${client.seq}}`;
  client.socket?.send(text);
  client.unacked = 0;
  wire.acks++;
  wire.ackBytes += text.length + serverHeader(text.length) + 4;
  if (type === "ack") v1Stats.acks++;
  else v1Stats.pings++;
}

/** Acks what waited 1 s, and pings every 20 s, for every client. */
function v1Sweep(): void {
  const now = performance.now();
  const ping = now - lastPing >= V1_PING_EVERY_MS;
  if (ping) lastPing = now;
  for (const client of clients) {
    if (client?.socket === undefined || client.id === "") continue;
    if (ping) v1Control(client, "ping");
    else if (
      client.unacked > 0 && now - client.firstUnackedAt >= V1_ACK_AFTER_MS
    ) v1Control(client, "ack");
  }
}
let lastPing = performance.now();
const sweeper = V1 ? setInterval(v1Sweep, 250) : undefined;

/** A text frame of wsgate.v1: control JSON, or `<seq>:` and the text. */
function v1Text(
  client: Client,
  socket: ClientSocket,
  text: string,
  ready: (id: string) => void,
  fail: (why: string) => void,
): void {
  if (text.charCodeAt(0) === 0x7b) {
    const control = JSON.parse(text) as { type?: unknown };
    if (control.type === "welcome") v1Stats.welcomes++;
    else if (control.type === "pong") v1Stats.pongs++;
    return;
  }
  const colon = text.indexOf(":");
  const seq = colon > 0 ? Number(text.slice(0, colon)) : NaN;
  if (!Number.isInteger(seq)) return fail(`not a wsgate.v1 frame: ${text}`);
  v1Data(client, seq);
  onText(client, socket, text.slice(colon + 1), ready, fail, "app");
}

/** A binary frame of wsgate.v1: a LEB128 sequence number, then the data. */
function v1Binary(client: Client, bytes: Uint8Array): void {
  let seq = 0;
  let shift = 1;
  let at = 0;
  for (;;) {
    const byte = bytes[at++];
    if (byte === undefined) return void strays++;
    seq += (byte & 0x7f) * shift;
    if (byte < 0x80) break;
    shift *= 128;
  }
  v1Data(client, seq);
  received(client, bytes.subarray(at));
}

function onBinary(client: Client, bytes: Uint8Array): void {
  wire.frames++;
  wire.bytes += bytes.length + serverHeader(bytes.length);
  if (V1) return v1Binary(client, bytes);
  if (settings.protocol === "socketio") {
    if (client.attachments === 0) return void strays++;
    client.attachments--;
  }
  received(client, bytes);
}

function connectClient(index: number): Promise<Client> {
  const node = index % settings.urls.length;
  const client: Client = {
    index,
    node,
    socket: undefined,
    id: "",
    idBytes: NO_ID,
    attachments: 0,
    answer: undefined,
    seq: 0,
    unacked: 0,
    firstUnackedAt: 0,
  };
  const locals = settings.localAddresses;
  const localAddress = locals.length > 0
    ? locals[Math.floor(index / settings.urls.length) % locals.length]
    : undefined;
  let url = settings.urls[node]!;
  if (settings.protocol === "socketio" && !url.includes("EIO=")) {
    url = new URL("socket.io/?EIO=4&transport=websocket", url).href;
  }
  return new Promise<Client>((resolve, reject) => {
    let settled = false;
    let failed = false;
    const settle = (error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error === undefined) return resolve(client);
      failed = true;
      client.socket?.close();
      reject(error);
    };
    const timer = setTimeout(
      () =>
        settle(
          new Error(
            `client ${index}: no id within ${settings.connectTimeoutS} s`,
          ),
        ),
      settings.connectTimeoutS * 1000,
    );
    const ready = (id: string) => {
      if (client.id !== "") return;
      const bytes = encoder.encode(id);
      if (bytes.length === 0 || bytes.length > 255) {
        return settle(new Error(`client id of ${bytes.length} bytes: ${id}`));
      }
      client.id = id;
      client.idBytes = bytes;
      settle();
    };
    openClient(settings.client, url, {
      text(socket, text) {
        client.socket ??= socket;
        onText(
          client,
          socket,
          text,
          ready,
          (why) => settle(new Error(`client ${index}: ${why}`)),
        );
      },
      binary(_socket, bytes) {
        onBinary(client, bytes);
      },
      closed(_socket, reason) {
        if (!settled) {
          settle(new Error(`client ${index} closed before its id: ${reason}`));
        } else if (!closing) {
          if (++lostClients <= 3) log(`client ${index} closed: ${reason}`);
        }
      },
    }, {
      localAddress,
      timeoutMs: settings.connectTimeoutS * 1000,
      protocol: V1 ? "wsgate.v1" : undefined,
    }).then(
      (socket) => {
        client.socket = socket;
        if (failed) socket.close();
        else if (V1) socket.send(V1_HELLO);
      },
      (error: Error) => settle(new Error(`client ${index}: ${error.message}`)),
    );
  });
}

/** Connects every client, --connect-concurrency at a time. */
async function connectAll(): Promise<void> {
  let next = 0;
  let done = 0;
  let failure: Error | undefined;
  const ticker = setInterval(() => progress(`connecting ${done}/${C}`), 500);
  const worker = async () => {
    while (next < C && failure === undefined) {
      const index = next++;
      try {
        clients[index] = await connectClient(index);
        done++;
      } catch (error) {
        failure ??= error as Error;
      }
    }
  };
  try {
    const workers = Math.min(settings.connectConcurrency, C);
    await Promise.all(Array.from({ length: workers }, worker));
  } finally {
    clearInterval(ticker);
  }
  if (failure !== undefined) throw failure;
}

/** Sends a text command and waits for the answer. */
function ask(
  client: Client,
  text: string,
  timeoutMs = 10_000,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.answer = undefined;
      reject(new Error(`no answer to ${text} within ${timeoutMs} ms`));
    }, timeoutMs);
    client.answer = (answer) => {
      clearTimeout(timer);
      resolve(answer);
    };
    client.socket!.send(V1 ? `:${text}` : text);
  });
}

// ---------------------------------------------------------------- counters

interface PeerCounters {
  unaryCalls: number;
  deliveries: number;
  batches: number;
  /**
   * wsgate_peer_deliveries_received_total of each URL's service (NaN
   * where the service does not have that counter).
   */
  received: number[];
}

/** The peer counters of every server's /metrics, summed (--stats). */
async function peerCounters(): Promise<PeerCounters | undefined> {
  if (!settings.stats) return undefined;
  const sum: PeerCounters = {
    unaryCalls: 0,
    deliveries: 0,
    batches: 0,
    received: [],
  };
  for (const url of settings.urls) {
    const metrics = new URL("/metrics", url.replace(/^ws/, "http"));
    // Generous: a service with many idle clients on a busy machine may
    // take seconds to answer.
    const response = await fetch(metrics, {
      signal: AbortSignal.timeout(20_000),
    });
    const text = await response.text();
    const total = (re: RegExp) => {
      let n = 0;
      for (const m of text.matchAll(re)) n += Number(m[1]);
      return n;
    };
    sum.unaryCalls += total(
      /^wsgate_peer_rpc_duration_seconds_count\{kind="unary"\} (\S+)$/gm,
    );
    sum.deliveries += total(/^wsgate_peer_deliveries_total (\S+)$/gm);
    sum.batches += total(/^wsgate_peer_batches_total\{[^}]*\} (\S+)$/gm);
    const received = /^wsgate_peer_deliveries_received_total (\S+)$/m.exec(
      text,
    );
    sum.received.push(received ? Number(received[1]) : NaN);
  }
  return sum;
}

// ---------------------------------------------------------------- stats

type Json = Record<string, unknown>;

/** p50, p99 and max of values[0, n) in ms, nearest rank. */
function quantiles(values: Float64Array, n: number, prefix = ""): Json {
  if (n === 0) {
    return {
      [`${prefix}p50_ms`]: null,
      [`${prefix}p99_ms`]: null,
      [`${prefix}max_ms`]: null,
    };
  }
  const sorted = values.slice(0, n).sort();
  const rank = (q: number) => sorted[Math.max(0, Math.ceil(q * n) - 1)]!;
  return {
    [`${prefix}p50_ms`]: round3(rank(0.5)),
    [`${prefix}p99_ms`]: round3(rank(0.99)),
    [`${prefix}max_ms`]: round3(sorted[n - 1]!),
  };
}

// ---------------------------------------------------------------- phases

/**
 * Bytes on the wire per delivery since `before`: of the binary frames to
 * the clients (header included) and of the acknowledgements back.
 */
function wireSince(before: typeof wire, delivered: number): Json {
  const per = (bytes: number) =>
    delivered > 0 ? round3(bytes / delivered) : null;
  return {
    wire_bytes_per_delivery: per(wire.bytes - before.bytes),
    ack_bytes_per_delivery: per(wire.ackBytes - before.ackBytes),
    acks: wire.acks - before.acks,
  };
}

/**
 * `total` broadcasts from client 0, at most `window` not yet delivered to
 * every client. Resolves when all are complete or the phase times out.
 */
function broadcasts(
  tag: number,
  total: number,
  window: number,
  measured: boolean,
): Promise<Json> {
  const copies = new Uint32Array(total);
  const sentAt = new Float64Array(total);
  const completion = new Float64Array(total);
  const latencies = new Float64Array(measured ? total * C : 0);
  let delivered = 0;
  let sent = 0;
  let complete = 0;
  let duplicates = 0;
  let first = 0;
  let last = 0;
  const sender = clients[0]!;
  return new Promise((resolve) => {
    const before = sample();
    const wireBefore = { ...wire };
    const fill = () => {
      while (sent - complete < window && sent < total) {
        const frame = testFrame(OP_BROADCAST, NO_ID, tag, sent);
        sentAt[sent] = performance.now();
        if (sent === 0) first = sentAt[0]!;
        sent++;
        sendFrame(sender, frame);
      }
    };
    const end = (timedOut: boolean) => {
      clearTimeout(timer);
      clearInterval(ticker);
      receiver = undefined;
      const after = sample();
      const ms = last - first;
      resolve({
        broadcasts: total,
        window,
        expected: total * C,
        delivered,
        dups: duplicates,
        timed_out: timedOut,
        duration_ms: round1(ms),
        msgs_per_s: ms > 0 ? Math.round(delivered / (ms / 1000)) : null,
        ...(measured ? quantiles(latencies, delivered) : {}),
        ...(measured ? quantiles(completion, complete, "all_") : {}),
        cpu_pct: cpuPct(before, after),
        server_cpu_us_per_msg: perUnitUs(before, after, delivered),
        ...wireSince(wireBefore, delivered),
      });
    };
    const timer = setTimeout(() => end(true), settings.phaseTimeoutS * 1000);
    const ticker = setInterval(
      () => measured && progress(`broadcast W${window}: ${complete}/${total}`),
      500,
    );
    receiver = {
      tag,
      frame(_client, op, seq, latency) {
        if (op !== OP_BROADCAST || seq >= total) return void strays++;
        const n = ++copies[seq]!;
        if (n > C) return void duplicates++;
        if (measured) latencies[delivered] = latency;
        delivered++;
        last = performance.now();
        if (n < C) return;
        completion[complete++] = last - sentAt[seq]!;
        if (complete === total) end(false);
        else fill();
      },
    };
    if (total === 0) end(false);
    else fill();
  });
}

/**
 * `total` point-to-point frames, at most `window` in flight; frame k goes
 * from client k mod C to the client after it.
 */
function pointToPoint(
  tag: number,
  total: number,
  window: number,
  measured: boolean,
): Promise<Json> {
  const target = (from: number) => (from + 1) % C;
  const arrived = new Uint8Array(total);
  const latencies = new Float64Array(total);
  let sent = 0;
  let delivered = 0;
  let duplicates = 0;
  let misrouted = 0;
  let first = 0;
  let last = 0;
  return new Promise((resolve) => {
    const before = sample();
    const wireBefore = { ...wire };
    const fill = () => {
      while (sent - delivered < window && sent < total) {
        const from = clients[sent % C]!;
        const to = clients[target(from.index)]!;
        const frame = testFrame(OP_POINT, to.idBytes, tag, sent);
        if (sent === 0) first = performance.now();
        sent++;
        sendFrame(from, frame);
      }
    };
    const end = (timedOut: boolean) => {
      clearTimeout(timer);
      clearInterval(ticker);
      receiver = undefined;
      const after = sample();
      const ms = last - first;
      resolve({
        messages: total,
        window,
        delivered,
        dups: duplicates,
        misrouted,
        timed_out: timedOut,
        duration_ms: round1(ms),
        msgs_per_s: ms > 0 ? Math.round(delivered / (ms / 1000)) : null,
        ...(measured ? quantiles(latencies, delivered) : {}),
        cpu_pct: cpuPct(before, after),
        server_cpu_us_per_msg: perUnitUs(before, after, delivered),
        ...wireSince(wireBefore, delivered),
      });
    };
    const timer = setTimeout(() => end(true), settings.phaseTimeoutS * 1000);
    const ticker = setInterval(
      () => measured && progress(`point-to-point: ${delivered}/${total}`),
      500,
    );
    receiver = {
      tag,
      frame(client, op, seq, latency) {
        if (op !== OP_POINT || seq >= total) return void strays++;
        if (arrived[seq] === 1) return void duplicates++;
        arrived[seq] = 1;
        if (client.index !== target(seq % C)) misrouted++;
        latencies[delivered++] = latency;
        last = performance.now();
        if (delivered === total) end(false);
        else fill();
      },
    };
    if (total === 0) end(false);
    else fill();
  });
}

async function countCalls(total: number): Promise<Json> {
  if (settings.protocol !== "app") {
    throw new Error("count needs --protocol app");
  }
  const latencies = new Float64Array(total);
  const before = sample();
  let answer = "";
  for (let i = 0; i < total; i++) {
    if (i % 50 === 0) progress(`getAllClientCount: ${i}/${total}`);
    const t = performance.now();
    answer = await ask(clients[0]!, "count");
    latencies[i] = performance.now() - t;
  }
  const after = sample();
  const ms = after.at - before.at;
  return {
    calls: total,
    answer,
    correct: answer === `count:${C}`,
    calls_per_s: ms > 0 ? Math.round(total / (ms / 1000)) : null,
    ...quantiles(latencies, total),
    cpu_pct: cpuPct(before, after),
    server_cpu_us_per_call: perUnitUs(before, after, total),
  };
}

/**
 * `total` sendToUid ('U') or sendToGroup ('G') frames from client 0 to
 * `key`, at most `window` whose delivery to every one of `holders` is not
 * complete. A copy at a client that is not a holder is misrouted.
 */
function keyedSends(
  tag: number,
  op: number,
  key: string,
  holders: readonly Client[],
  total: number,
  window: number,
): Promise<Json> {
  const keyBytes = encoder.encode(key);
  const isHolder = new Uint8Array(C);
  for (const h of holders) isHolder[h.index] = 1;
  const expected = holders.length;
  const copies = new Uint32Array(total);
  const sentAt = new Float64Array(total);
  const completion = new Float64Array(total);
  let delivered = 0;
  let sent = 0;
  let complete = 0;
  let duplicates = 0;
  let misrouted = 0;
  let first = 0;
  let last = 0;
  const sender = clients[0]!;
  return new Promise((resolve) => {
    const before = sample();
    const fill = () => {
      while (sent - complete < window && sent < total) {
        sentAt[sent] = performance.now();
        if (sent === 0) first = sentAt[0]!;
        sendFrame(sender, testFrame(op, keyBytes, tag, sent));
        sent++;
      }
    };
    const end = (timedOut: boolean) => {
      clearTimeout(timer);
      clearInterval(ticker);
      receiver = undefined;
      const after = sample();
      const ms = last - first;
      resolve({
        key,
        sends: total,
        window,
        holders: expected,
        holder_urls: new Set(holders.map((h) => h.node)).size,
        expected: total * expected,
        delivered,
        dups: duplicates,
        misrouted,
        timed_out: timedOut,
        duration_ms: round1(ms),
        sends_per_s: ms > 0 ? Math.round(complete / (ms / 1000)) : null,
        msgs_per_s: ms > 0 ? Math.round(delivered / (ms / 1000)) : null,
        ...quantiles(completion, complete, "all_"),
        cpu_pct: cpuPct(before, after),
        server_cpu_us_per_send: perUnitUs(before, after, complete),
        server_cpu_us_per_send_net: perUnitNetUs(before, after, complete),
        server_cpu_s: round3(serverSeconds(before, after)),
        elapsed_s: round3((after.at - before.at) / 1000),
      });
    };
    const timer = setTimeout(() => end(true), settings.phaseTimeoutS * 1000);
    const ticker = setInterval(
      () => progress(`${key}: ${complete}/${total}`),
      500,
    );
    receiver = {
      tag,
      frame(client, frameOp, seq) {
        if (frameOp !== op || seq >= total) return void strays++;
        if (isHolder[client.index] !== 1) return void misrouted++;
        const n = ++copies[seq]!;
        if (n > expected) return void duplicates++;
        delivered++;
        last = performance.now();
        if (n < expected) return;
        completion[complete++] = last - sentAt[seq]!;
        if (complete === total) end(false);
        else fill();
      },
    };
    if (total === 0) end(false);
    else fill();
  });
}

/**
 * The holders of the keyed phases: client k (k < number of URLs) holds
 * "u-all" and "g-all", client N+1 holds "u-one" and "g-one". Each bind and
 * join is acknowledged by the app once the Api call has resolved.
 */
async function bindHolders(): Promise<{ all: Client[]; one: Client[] }> {
  if (settings.protocol !== "app") {
    throw new Error("--keyed and --online need --protocol app");
  }
  const n = settings.urls.length;
  const all = clients.slice(0, n);
  const one = [clients[(n + 1) % C]!];
  for (const [holders, suffix] of [[all, "all"], [one, "one"]] as const) {
    for (const client of holders) {
      for (const command of [`bind:u-${suffix}`, `join:g-${suffix}`]) {
        const answer = await ask(client, command);
        if (answer !== "ok") {
          throw new Error(`${command} from client ${client.index}: ${answer}`);
        }
      }
    }
  }
  return { all, one };
}

/** `total` isUidOnline calls from client 0, one at a time. */
async function onlineCalls(
  uid: string,
  expected: boolean,
  total: number,
): Promise<Json> {
  const latencies = new Float64Array(total);
  const before = sample();
  let wrong = 0;
  for (let i = 0; i < total; i++) {
    if (i % 50 === 0) progress(`isUidOnline(${uid}): ${i}/${total}`);
    const t = performance.now();
    const answer = await ask(clients[0]!, `online:${uid}`);
    latencies[i] = performance.now() - t;
    if (answer !== `online:${expected}`) wrong++;
  }
  const after = sample();
  const ms = after.at - before.at;
  return {
    uid,
    calls: total,
    wrong,
    calls_per_s: ms > 0 ? Math.round(total / (ms / 1000)) : null,
    ...quantiles(latencies, total),
    cpu_pct: cpuPct(before, after),
    server_cpu_us_per_call: perUnitUs(before, after, total),
    server_cpu_us_per_call_net: perUnitNetUs(before, after, total),
    server_cpu_s: round3(serverSeconds(before, after)),
    elapsed_s: round3((after.at - before.at) / 1000),
  };
}

// ---------------------------------------------------------------- smoke

/** Waits until `check` holds or `ms` passed; returns whether it held. */
async function until(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) return false;
    await sleep(10);
  }
  return true;
}

/** The routing checks of --smoke; each entry is one check and its result. */
async function smoke(): Promise<{ ok: boolean; checks: Json[] }> {
  const checks: Json[] = [];
  const ids = new Set(clients.map((c) => c.id));
  checks.push({ check: "distinct ids", ok: ids.size === C, ids: ids.size });
  const nodes = new Set(clients.map((c) => c.node)).size;
  for (const sender of [clients[0]!, clients[C - 1]!]) {
    const got = new Uint32Array(C);
    receiver = {
      tag: 90,
      frame(client, op) {
        if (op === OP_BROADCAST) got[client.index]!++;
      },
    };
    sendFrame(sender, testFrame(OP_BROADCAST, NO_ID, 90, 0));
    await until(() => got.every((n) => n >= 1), 5000);
    await sleep(200); // time for duplicates to show
    const missing = got.filter((n) => n === 0).length;
    const extra = got.filter((n) => n > 1).length;
    checks.push({
      check: `broadcast from client ${sender.index} (url ${
        sender.node + 1
      } of ${nodes}) to all ${C}`,
      ok: missing === 0 && extra === 0,
      missing,
      duplicated: extra,
    });
  }
  const got = new Int32Array(C).fill(-1);
  let wrong = 0;
  let twice = 0;
  receiver = {
    tag: 91,
    frame(client, op, seq) {
      if (op !== OP_POINT || seq >= C) return;
      if (client.index !== (seq + 1) % C) wrong++;
      if (got[seq] !== -1) twice++;
      got[seq] = client.index;
    },
  };
  for (const from of clients) {
    const to = clients[(from.index + 1) % C]!;
    sendFrame(from, testFrame(OP_POINT, to.idBytes, 91, from.index));
  }
  await until(() => got.every((n) => n >= 0), 5000);
  await sleep(200);
  const crossing =
    clients.filter((c) => c.node !== clients[(c.index + 1) % C]!.node).length;
  checks.push({
    check:
      `point-to-point from each client to the next (${crossing} of ${C} cross to another url)`,
    ok: got.every((n) => n >= 0) && wrong === 0 && twice === 0,
    missing: got.filter((n) => n < 0).length,
    misrouted: wrong,
    duplicated: twice,
  });
  receiver = undefined;
  return { ok: checks.every((c) => c.ok === true), checks };
}

// ---------------------------------------------------------------- run

const result: Json = {
  label: settings.label,
  protocol: settings.protocol,
  client: settings.client,
  urls: settings.urls,
  clients: C,
  size: settings.size,
};
let exitCode = 0;

/** Runs one phase; `mark()` starts the counters after any warm-up. */
async function phase(
  name: string,
  body: (mark: () => Promise<void>) => Promise<Json>,
): Promise<Json | undefined> {
  try {
    let before: PeerCounters | undefined;
    const out = await body(async () => {
      before = await peerCounters();
    });
    const after = await peerCounters();
    if (before !== undefined && after !== undefined) {
      const received = after.received.map((n, i) => n - before!.received[i]!);
      out.rpc = {
        unaryCalls: after.unaryCalls - before.unaryCalls,
        deliveries: after.deliveries - before.deliveries,
        batches: after.batches - before.batches,
        // null (in JSON) where the services have no such counter.
        received_by_url: received,
      };
    }
    result[name] = out;
    log(`${name}: ${JSON.stringify(out)}`);
    if (out.timed_out === true) exitCode = 3;
    await sleep(300);
    return out;
  } catch (error) {
    result[name] = { error: (error as Error).message };
    log(`${name} failed: ${(error as Error).message}`);
    exitCode = 3;
    return undefined;
  }
}

function warmedUp(out: Json, what: string): void {
  if (out.timed_out === true) {
    throw new Error(
      `${what} warm-up timed out (${out.delivered} of ${
        out.expected ?? out.messages
      } delivered)`,
    );
  }
}

async function measure(): Promise<void> {
  log(`connecting ${C} clients to ${settings.urls.join(" ")}`);
  const memoryBefore = residentAll();
  const before = sample();
  await connectAll();
  const after = sample();
  progress(`connected ${C} clients`);
  const connectMs = after.at - before.at;
  await sleep(Math.max(1000, settings.holdS * 1000));
  result.connect = {
    ms: round1(connectMs),
    per_s: Math.round(C / (connectMs / 1000)),
    cpu_pct: cpuPct(before, after),
    server_cpu_us_per_connect: perUnitUs(before, after, C),
    rss_kib_before: memoryBefore,
    rss_kib_after: residentAll(),
  };
  log(`connected in ${round1(connectMs)} ms`);

  if (settings.smoke) {
    const out = await smoke();
    result.smoke = out;
    if (!out.ok) exitCode = 1;
    return;
  }
  if (settings.bcast > 0) {
    let best: Json | undefined;
    for (const [k, window] of settings.bcastWindows.entries()) {
      const out = await phase(`bcast_w${window}`, async (mark) => {
        if (k === 0 && settings.warmupBcast > 0) {
          const warm = Math.min(settings.warmupBcast, settings.bcast);
          warmedUp(await broadcasts(1, warm, window, false), "broadcast");
          await sleep(200);
        }
        await mark();
        return broadcasts(10 + k, settings.bcast, window, true);
      });
      if (out === undefined || out.timed_out === true) {
        result.bcast = out ?? result[`bcast_w${window}`];
        best = undefined;
        break;
      }
      if (
        best === undefined ||
        (out.msgs_per_s as number) > (best.msgs_per_s as number)
      ) {
        best = out;
      }
    }
    if (best !== undefined) result.bcast = best;
  }
  if (settings.bcastLat > 0) {
    await phase("bcast_lat", async (mark) => {
      await mark();
      return broadcasts(5, settings.bcastLat, 1, true);
    });
  }
  if (settings.p2p > 0) {
    await phase("p2p", async (mark) => {
      if (settings.warmupP2p > 0) {
        const warm = Math.min(settings.warmupP2p, settings.p2p);
        warmedUp(
          await pointToPoint(3, warm, settings.p2pWindow, false),
          "point-to-point",
        );
        await sleep(200);
      }
      await mark();
      return pointToPoint(4, settings.p2p, settings.p2pWindow, true);
    });
  }
  if (settings.count > 0) {
    await phase("count", async (mark) => {
      await mark();
      return countCalls(settings.count);
    });
  }
  if (settings.keyed > 0 || settings.online > 0) {
    const holders = await bindHolders();
    if (settings.openLinks) {
      for (const client of holders.all) {
        sendFrame(client, testFrame(OP_BROADCAST, NO_ID, 99, 0));
      }
      await sleep(1500);
    }
    await sleep(500);
    result.idle_cpu = await measureIdleCpu(3000);
    const keyed: [string, number, string, Client[]][] = [
      ["uid_one", OP_UID, "u-one", holders.one],
      ["group_one", OP_GROUP, "g-one", holders.one],
      ["uid_all", OP_UID, "u-all", holders.all],
      ["group_all", OP_GROUP, "g-all", holders.all],
    ];
    for (const [k, [name, op, key, who]] of keyed.entries()) {
      if (settings.keyed === 0) break;
      await phase(name, async (mark) => {
        const warm = Math.min(200, settings.keyed);
        warmedUp(
          await keyedSends(20 + k, op, key, who, warm, settings.keyedWindow),
          name,
        );
        await sleep(200);
        await mark();
        return keyedSends(
          30 + k,
          op,
          key,
          who,
          settings.keyed,
          settings.keyedWindow,
        );
      });
    }
    for (
      const [name, uid, on] of [
        ["online_one", "u-one", true],
        ["online_none", "u-nobody", false],
      ] as const
    ) {
      if (settings.online === 0) break;
      await phase(name, async (mark) => {
        await mark();
        return onlineCalls(uid, on, settings.online);
      });
    }
    // Idle CPU again: the drivers may subtract the mean of both.
    result.idle_cpu_after = await measureIdleCpu(3000);
  }
}

let printed = false;
/** Closes every client (bounded), prints the result line and exits. */
async function finish(): Promise<never> {
  result.strays = strays;
  result.client_io = { ...clientCounters };
  if (V1) result.v1 = { ...v1Stats };
  clearInterval(sweeper);
  result.unexpected_closes = lostClients;
  closing = true;
  progress("closing clients");
  for (const client of clients) client?.socket?.close();
  await until(() => clients.every((c) => c?.socket?.isClosed ?? true), 5000);
  if (!printed) {
    printed = true;
    console.log(JSON.stringify(result));
  }
  Deno.exit(exitCode);
}

// The whole run is bounded: past --deadline, whatever was measured is
// printed and the process ends.
setTimeout(() => {
  result.error = `the run took longer than ${settings.deadlineS} s`;
  exitCode = 2;
  finish();
}, settings.deadlineS * 1000);

try {
  await measure();
} catch (error) {
  result.error = (error as Error).message;
  exitCode = 2;
}
await finish();
