// WebSocket client transports for the load generator (bench/load.ts).
//
// Copied from our peer benchmark harness (../shared/bench/wsclient.ts in the
// workplace), changed only to pass this project's strict type checks.
//
// "ffi"    : (default, Linux) RFC 6455 client on raw non-blocking sockets +
//            epoll through Deno FFI to libc. One poll loop serves all
//            connections; each recv() syscall returns every frame queued on
//            that socket. Costs ~1 us of load generator CPU per received
//            message, vs ~5 us for "tcp" and ~6 us for "native" (measured:
//            Deno async ops cost a few us each, and with thousands of
//            sockets nearly every read returns a single small frame).
// "tcp"    : same framing on Deno.connect (one async read loop per socket).
// "native" : Deno's built-in WebSocket (cross-check).
//
// Client frames use an all-zero masking key (valid framing; the server
// unmasks as usual), no extensions, no compression. Text frames arrive as
// strings, binary frames as Uint8Array views that are valid only during the
// callback (the read buffer is reused).

export interface WsHandlers {
  onText(s: string): void;
  onBinary(u8: Uint8Array): void;
  onClose(reason: string): void;
}

export interface WsConn {
  /** Begin delivering frames to the handlers (call after storing the conn). */
  start(): void;
  send(data: string | Uint8Array): void;
  close(): void;
  readonly closed: boolean;
}

export type Transport = "ffi" | "tcp" | "native";

/** srcAddr: local IPv4 address to bind (ffi only), e.g. "127.0.0.2": every
 *  source address has its own ~28k ephemeral ports toward one server port. */
export function connectWs(
  transport: Transport,
  url: string,
  h: WsHandlers,
  srcAddr?: string,
): Promise<WsConn> {
  if (srcAddr && transport !== "ffi") {
    return Promise.reject(new Error("source addresses need --client ffi"));
  }
  if (transport === "ffi") return connectFfi(url, h, srcAddr);
  if (transport === "tcp") return connectTcp(url, h);
  return connectNative(url, h);
}

/** Counters for the JSON report: epoll_wait calls, events and recv calls (ffi), frames parsed (ffi, tcp). */
export const STATS = { polls: 0, events: 0, recvs: 0, frames: 0 };
const enc = new TextEncoder();
const dec = new TextDecoder();
const TEXT_AS_BINARY = Deno.env.get("WS_TEXT_AS_BINARY") === "1";
const MAX_FRAME = 64 * 1024 * 1024;

// ---------------------------------------------------------------- framing
/** Client frame with FIN set and an all-zero masking key (payload unchanged). */
export function frame(op: number, payload: Uint8Array): Uint8Array {
  const n = payload.length;
  const hdr = n < 126 ? 6 : n < 65536 ? 8 : 14;
  const f = new Uint8Array(hdr + n);
  f[0] = 0x80 | op;
  if (n < 126) {
    f[1] = 0x80 | n;
  } else if (n < 65536) {
    f[1] = 0x80 | 126;
    f[2] = n >> 8;
    f[3] = n & 0xff;
  } else {
    f[1] = 0x80 | 127;
    const dv = new DataView(f.buffer);
    dv.setUint32(2, Math.floor(n / 2 ** 32));
    dv.setUint32(6, n >>> 0);
  }
  // bytes hdr-4 .. hdr-1: masking key 0,0,0,0 (already zero)
  f.set(payload, hdr);
  return f;
}

/** Shared frame-level logic: parsing, control frames, fragmentation. */
abstract class WsBase implements WsConn {
  protected h: WsHandlers;
  protected isClosed = false;
  protected closing = false; // close frame queued/sent by us
  #fragOp = 0;
  #frags: Uint8Array[] = [];
  /** total length of the incomplete frame at the end of the last parse, or 0 */
  protected need = 0;

  constructor(h: WsHandlers) {
    this.h = h;
  }
  get closed() {
    return this.isClosed;
  }
  abstract start(): void;
  protected abstract writeFrame(f: Uint8Array): void;
  protected abstract shutdown(reason: string): void;

  send(data: string | Uint8Array) {
    if (this.isClosed || this.closing) return;
    const isText = typeof data === "string";
    this.writeFrame(
      frame(
        isText ? 0x1 : 0x2,
        isText ? enc.encode(data as string) : data as Uint8Array,
      ),
    );
  }

  close() {
    if (this.isClosed || this.closing) return;
    this.writeFrame(frame(0x8, new Uint8Array([0x03, 0xe8]))); // 1000 normal closure
    this.closing = true;
    this.afterCloseQueued();
  }
  protected abstract afterCloseQueued(): void;

  /** Parse complete frames in buf[0..have); returns bytes consumed. */
  protected parse(buf: Uint8Array, have: number): number {
    let p = 0;
    this.need = 0;
    while (!this.isClosed) {
      if (have - p < 2) break;
      const b0 = buf[p]!, b1 = buf[p + 1]!;
      let len = b1 & 0x7f;
      let hdr = 2;
      if (len === 126) {
        if (have - p < 4) break;
        len = (buf[p + 2]! << 8) | buf[p + 3]!;
        hdr = 4;
      } else if (len === 127) {
        if (have - p < 10) break;
        len = buf[p + 6]! * 2 ** 24 +
          ((buf[p + 7]! << 16) | (buf[p + 8]! << 8) | buf[p + 9]!);
        if (buf[p + 2]! | buf[p + 3]! | buf[p + 4]! | buf[p + 5]!) {
          len = MAX_FRAME + 1;
        }
        hdr = 10;
      }
      if (len > MAX_FRAME) throw new Error(`frame too large (${len})`);
      const masked = (b1 & 0x80) !== 0;
      const maskAt = p + hdr;
      if (masked) hdr += 4;
      if (have - p < hdr + len) {
        this.need = hdr + len;
        break;
      }
      const payload = buf.subarray(p + hdr, p + hdr + len);
      if (masked) {
        for (let k = 0; k < len; k++) {
          payload[k] = payload[k]! ^ buf[maskAt + (k & 3)]!;
        }
      }
      p += hdr + len;
      STATS.frames++;
      this.onFrame(b0 & 0x80, b0 & 0x0f, payload);
    }
    return p;
  }

  protected onFrame(fin: number, op: number, payload: Uint8Array) {
    if (op >= 0x8) { // control frames
      if (op === 0x8) {
        if (!this.closing) {
          this.writeFrame(frame(0x8, payload.slice(0, 2)));
          this.closing = true;
        }
        this.shutdown("closed by server");
      } else if (op === 0x9) {
        this.writeFrame(frame(0xa, payload.slice()));
      }
      return;
    }
    if (op === 0x0 || !fin) { // fragmented message
      if (op !== 0x0) {
        this.#fragOp = op;
        this.#frags = [];
      }
      this.#frags.push(payload.slice());
      if (!fin) return;
      const total = this.#frags.reduce((a, b) => a + b.length, 0);
      const whole = new Uint8Array(total);
      let o = 0;
      for (const f of this.#frags) {
        whole.set(f, o);
        o += f.length;
      }
      this.#frags = [];
      op = this.#fragOp;
      payload = whole;
    }
    // With WS_TEXT_AS_BINARY=1, a TEXT frame whose first
    // byte is 'B' (0x42) or 'P' (0x50) is handed to onBinary as raw bytes (no UTF-8 decoding),
    // because bin-x/websocket writes every frame as websocket.TextMessage. "id:..." text
    // frames and Socket.IO text frames (digits) are unaffected.
    if (
      op === 0x1 && TEXT_AS_BINARY && payload.length > 0 &&
      (payload[0] === 0x42 || payload[0] === 0x50)
    ) {
      this.h.onBinary(payload);
      return;
    }
    if (op === 0x1) this.h.onText(dec.decode(payload));
    else if (op === 0x2) this.h.onBinary(payload);
  }
}

function upgradeRequest(u: URL): Uint8Array {
  const keyBytes = new Uint8Array(16);
  crypto.getRandomValues(keyBytes);
  const key = btoa(String.fromCharCode(...keyBytes));
  return enc.encode(
    `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
}

/** Index just past "\r\n\r\n" in buf[0..have), or -1. */
function headEnd(buf: Uint8Array, have: number, from = 0): number {
  for (let k = Math.max(0, from - 3); k + 3 < have; k++) {
    if (
      buf[k] === 13 && buf[k + 1] === 10 && buf[k + 2] === 13 &&
      buf[k + 3] === 10
    ) return k + 4;
  }
  return -1;
}

function checkHead(head: string) {
  if (!/^HTTP\/1\.1 101/.test(head)) {
    throw new Error(`handshake failed: ${head.split("\r\n")[0]}`);
  }
  if (/\r\nsec-websocket-extensions:/i.test(head)) {
    throw new Error("server negotiated an extension; unsupported");
  }
}

// ---------------------------------------------------------------- native
export function connectNative(url: string, h: WsHandlers): Promise<WsConn> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    let open = false, closed = false;
    const conn: WsConn = {
      start: () => {},
      send: (d) => ws.send(d),
      close: () => ws.close(),
      get closed() {
        return closed;
      },
    };
    ws.onopen = () => {
      open = true;
      resolve(conn);
    };
    ws.onerror = (e) => {
      if (!open) {
        reject(new Error((e as ErrorEvent).message ?? "websocket error"));
      }
    };
    ws.onclose = (e) => {
      closed = true;
      if (!open) reject(new Error(`closed before open (${e.code})`));
      else h.onClose(`close ${e.code}`);
    };
    ws.onmessage = (ev) => {
      const d = ev.data;
      if (typeof d === "string") h.onText(d);
      else h.onBinary(new Uint8Array(d as ArrayBuffer));
    };
  });
}

// ---------------------------------------------------------------- tcp (Deno.connect)
class TcpWs extends WsBase {
  #conn: Deno.TcpConn;
  #q: Uint8Array[] = [];
  #qBytes = 0;
  #writing = false;
  #initial: Uint8Array | null;

  constructor(conn: Deno.TcpConn, h: WsHandlers, initial: Uint8Array) {
    super(h);
    this.#conn = conn;
    this.#initial = initial;
  }

  start() {
    const initial = this.#initial;
    if (!initial) return;
    this.#initial = null;
    this.#readLoop(initial); // runs until close
  }

  protected writeFrame(f: Uint8Array) {
    if (this.isClosed) return;
    this.#q.push(f);
    this.#qBytes += f.length;
    if (!this.#writing) this.#flush();
  }

  protected afterCloseQueued() {}

  async #flush() {
    this.#writing = true;
    try {
      while (this.#q.length && !this.isClosed) {
        let buf: Uint8Array;
        if (this.#q.length === 1) buf = this.#q[0]!;
        else {
          buf = new Uint8Array(this.#qBytes);
          let o = 0;
          for (const b of this.#q) {
            buf.set(b, o);
            o += b.length;
          }
        }
        this.#q = [];
        this.#qBytes = 0;
        let off = 0;
        while (off < buf.length) {
          off += await this.#conn.write(buf.subarray(off));
        }
      }
    } catch (e) {
      this.shutdown(`write error: ${(e as Error).message}`);
    }
    this.#writing = false;
    if (this.closing) this.shutdown("closed by client");
  }

  protected shutdown(reason: string) {
    if (this.isClosed) return;
    if (this.#writing && this.closing) return; // #flush shuts down when done
    this.isClosed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    this.h.onClose(reason);
  }

  async #readLoop(initial: Uint8Array) {
    let buf = new Uint8Array(Math.max(16384, initial.length * 2));
    buf.set(initial);
    let have = initial.length;
    try {
      for (;;) {
        const p = this.parse(buf, have);
        if (this.isClosed) return;
        if (p > 0) {
          buf.copyWithin(0, p, have);
          have -= p;
        }
        if (this.need > buf.length || have === buf.length) {
          const nb = new Uint8Array(Math.max(buf.length * 2, this.need + 1024));
          nb.set(buf.subarray(0, have));
          buf = nb;
        }
        const n = await this.#conn.read(buf.subarray(have));
        if (n === null) {
          this.shutdown("eof");
          return;
        }
        have += n;
      }
    } catch (e) {
      this.shutdown(`read error: ${(e as Error).message}`);
    }
  }
}

export async function connectTcp(
  url: string,
  h: WsHandlers,
  timeoutMs = 30000,
): Promise<WsConn> {
  const u = new URL(url);
  if (u.protocol !== "ws:") {
    throw new Error(`tcp transport supports ws:// only (${url})`);
  }
  const conn = await Deno.connect({
    hostname: u.hostname.replace(/^\[|\]$/g, ""),
    port: Number(u.port || 80),
  });
  try {
    conn.setNoDelay(true);
    const rb = upgradeRequest(u);
    let off = 0;
    while (off < rb.length) off += await conn.write(rb.subarray(off));
    let buf = new Uint8Array(4096);
    let have = 0, end = -1;
    const deadline = Date.now() + timeoutMs;
    while (end < 0) {
      if (Date.now() > deadline) throw new Error("handshake timeout");
      if (have === buf.length) {
        if (buf.length >= 65536) {
          throw new Error("handshake response too large");
        }
        const nb = new Uint8Array(buf.length * 2);
        nb.set(buf);
        buf = nb;
      }
      const n = await conn.read(buf.subarray(have));
      if (n === null) throw new Error("eof during handshake");
      have += n;
      end = headEnd(buf, have, have - n);
    }
    checkHead(dec.decode(buf.subarray(0, end)));
    return new TcpWs(conn, h, buf.slice(end, have));
  } catch (e) {
    try {
      conn.close();
    } catch { /* ignore */ }
    throw e;
  }
}

// ---------------------------------------------------------------- ffi (libc + epoll)
const AF_INET = 2,
  SOCK_STREAM = 1,
  SOCK_NONBLOCK = 0x800,
  SOCK_CLOEXEC = 0x80000;
const IPPROTO_TCP = 6,
  TCP_NODELAY = 1,
  SOL_SOCKET = 1,
  SO_ERROR = 4,
  SOL_IP = 0,
  IP_BIND_ADDRESS_NO_PORT = 24;
const EPOLL_CTL_ADD = 1, EPOLL_CTL_DEL = 2, EPOLL_CTL_MOD = 3;
const EPOLLIN = 0x1, EPOLLOUT = 0x4, EPOLLERR = 0x8, EPOLLHUP = 0x10;
const EAGAIN = 11, EINTR = 4, EINPROGRESS = 115;
const MSG_NOSIGNAL = 0x4000;
const EP_EVENT_SIZE = 12; // struct epoll_event is packed on x86_64: u32 events + u64 data
const MAX_EVENTS = 1024;

type Libc = ReturnType<typeof openLibc>;
function openLibc() {
  return Deno.dlopen("libc.so.6", {
    socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
    connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
    bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
    send: { parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
    recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
    setsockopt: {
      parameters: ["i32", "i32", "i32", "buffer", "u32"],
      result: "i32",
    },
    getsockopt: {
      parameters: ["i32", "i32", "i32", "buffer", "buffer"],
      result: "i32",
    },
    epoll_create1: { parameters: ["i32"], result: "i32" },
    epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
    epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
    __errno_location: { parameters: [], result: "pointer" },
  }).symbols;
}

let libc: Libc | null = null;
let errnoView: Deno.UnsafePointerView | null = null;
let epfd = -1;
const ffiConns = new Map<number, FfiWs>();
const evBuf = new Uint8Array(EP_EVENT_SIZE * MAX_EVENTS);
const evDv = new DataView(evBuf.buffer);
const ctlBuf = new Uint8Array(EP_EVENT_SIZE);
const ctlDv = new DataView(ctlBuf.buffer);
let rbuf = new Uint8Array(1 << 20); // shared receive buffer
let pollerRunning = false;

/** size_t argument: Deno FFI accepts a plain number for "usize" at run time
 *  (avoids a BigInt allocation per call); the typings only say bigint. */
const sz = (n: number) => n as unknown as bigint;

function errno(): number {
  return errnoView!.getInt32();
}

function epollCtl(op: number, fd: number, events: number) {
  ctlDv.setUint32(0, events, true);
  ctlDv.setUint32(4, fd, true); // data.fd (low half of the u64)
  ctlDv.setUint32(8, 0, true);
  if (libc!.epoll_ctl(epfd, op, fd, ctlBuf) < 0 && op !== EPOLL_CTL_DEL) {
    throw new Error(`epoll_ctl(${op}) errno ${errno()}`);
  }
}

function ipv4(host: string): Uint8Array {
  if (host === "localhost") host = "127.0.0.1";
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(host);
  if (!m) {
    throw new Error(`ffi transport needs a dotted IPv4 address (got ${host})`);
  }
  return new Uint8Array(m.slice(1).map(Number));
}

class FfiWs extends WsBase {
  fd: number;
  state: 0 | 1 | 2 = 0; // 0 connecting, 1 handshake sent, 2 open
  #req: Uint8Array;
  #resolve: (c: WsConn) => void;
  #reject: (e: Error) => void;
  #pending: Uint8Array | null = null; // received bytes not yet parsed
  #wq: Uint8Array | null = null; // unsent bytes (socket buffer full)
  #started = false;

  constructor(
    fd: number,
    h: WsHandlers,
    req: Uint8Array,
    resolve: (c: WsConn) => void,
    reject: (e: Error) => void,
  ) {
    super(h);
    this.fd = fd;
    this.#req = req;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  start() {
    if (this.#started) return;
    this.#started = true;
    if (this.#pending && this.state === 2) this.#consume(null); // bytes that came with the 101
  }

  protected writeFrame(f: Uint8Array) {
    if (this.isClosed) return;
    if (this.#wq) { // already backlogged: append
      const nb = new Uint8Array(this.#wq.length + f.length);
      nb.set(this.#wq);
      nb.set(f, this.#wq.length);
      this.#wq = nb;
      return;
    }
    this.#sendNow(f);
  }

  #sendNow(f: Uint8Array) {
    let off = 0;
    while (off < f.length) {
      const n = libc!.send(
        this.fd,
        off ? f.subarray(off) : f,
        sz(f.length - off),
        MSG_NOSIGNAL,
      );
      if (n < 0) {
        const e = errno();
        if (e === EINTR) continue;
        if (e === EAGAIN) break;
        this.shutdown(`send errno ${e}`);
        return;
      }
      off += n;
    }
    if (off < f.length) {
      this.#wq = f.slice(off);
      epollCtl(EPOLL_CTL_MOD, this.fd, EPOLLIN | EPOLLOUT);
    }
  }

  protected afterCloseQueued() {
    if (!this.#wq) this.shutdown("closed by client");
  }

  protected shutdown(reason: string) {
    if (this.isClosed) return;
    this.isClosed = true;
    epollCtl(EPOLL_CTL_DEL, this.fd, 0);
    libc!.close(this.fd);
    ffiConns.delete(this.fd);
    if (this.state < 2) this.#reject(new Error(reason));
    else this.h.onClose(reason);
  }

  fail(reason: string) {
    this.shutdown(reason);
  }

  onWritable() {
    if (this.state === 0) {
      const v = new Uint8Array(4),
        l = new Uint8Array(new Uint32Array([4]).buffer);
      libc!.getsockopt(this.fd, SOL_SOCKET, SO_ERROR, v, l);
      const err = new DataView(v.buffer).getInt32(0, true);
      if (err) return this.shutdown(`connect errno ${err}`);
      this.state = 1;
      epollCtl(EPOLL_CTL_MOD, this.fd, EPOLLIN);
      this.#sendNow(this.#req);
      return;
    }
    const q = this.#wq;
    this.#wq = null;
    epollCtl(EPOLL_CTL_MOD, this.fd, EPOLLIN);
    if (q) this.#sendNow(q);
    if (!this.#wq && this.closing) this.shutdown("closed by client");
  }

  onReadable() {
    // place pending bytes first, then recv after them into the shared buffer
    let have = 0;
    const pend = this.#pending;
    if (pend) {
      if (pend.length + 65536 > rbuf.length) {
        rbuf = new Uint8Array(Math.max(rbuf.length * 2, pend.length + 65536));
      }
      rbuf.set(pend);
      have = pend.length;
      this.#pending = null;
    }
    STATS.recvs++;
    const n = libc!.recv(
      this.fd,
      have ? rbuf.subarray(have) : rbuf,
      sz(rbuf.length - have),
      0,
    );
    if (n === 0) return this.shutdown("eof");
    if (n < 0) {
      const e = errno();
      if (e !== EAGAIN && e !== EINTR) return this.shutdown(`recv errno ${e}`);
      if (have) this.#pending = rbuf.slice(0, have);
      return;
    }
    have += n;
    if (this.state === 1) {
      const end = headEnd(rbuf, have, have - n);
      if (end < 0) {
        if (have > 65536) return this.shutdown("handshake response too large");
        this.#pending = rbuf.slice(0, have);
        return;
      }
      try {
        checkHead(dec.decode(rbuf.subarray(0, end)));
      } catch (e) {
        return this.shutdown((e as Error).message);
      }
      this.state = 2;
      if (end < have) this.#pending = rbuf.slice(end, have);
      this.#resolve(this); // frames are delivered after start()
      return;
    }
    if (!this.#started) {
      this.#pending = rbuf.slice(0, have);
      return;
    }
    this.#consume(have);
  }

  /** Parse frames in rbuf[0..have) (or the pending bytes when have is null). */
  #consume(have: number | null) {
    let buf: Uint8Array = rbuf;
    if (have === null) {
      buf = this.#pending!;
      have = buf.length;
      this.#pending = null;
    }
    try {
      const p = this.parse(buf, have);
      if (!this.isClosed && p < have) this.#pending = buf.slice(p, have);
    } catch (e) {
      this.shutdown(`protocol error: ${(e as Error).message}`);
    }
  }
}

/** One poll step: wait up to timeoutMs for events and dispatch them. */
function pollOnce(timeoutMs: number): number {
  STATS.polls++;
  const n = libc!.epoll_wait(epfd, evBuf, MAX_EVENTS, timeoutMs);
  STATS.events += n;
  if (n < 0) {
    const e = errno();
    if (e === EINTR) return 0;
    throw new Error(`epoll_wait errno ${e}`);
  }
  for (let k = 0; k < n; k++) {
    const ev = evDv.getUint32(k * EP_EVENT_SIZE, true);
    const fd = evDv.getUint32(k * EP_EVENT_SIZE + 4, true);
    const c = ffiConns.get(fd);
    if (!c) continue;
    if (ev & EPOLLOUT) c.onWritable();
    if (c.closed) continue;
    if (ev & EPOLLIN) c.onReadable();
    else if (ev & (EPOLLERR | EPOLLHUP)) {
      if (c.state === 0) c.onWritable(); // reports the connect error
      else c.fail("socket error/hangup");
    }
  }
  return n;
}

/** Drives all ffi connections; yields to microtasks every step and to
 *  timers every ~20 ms. Ends when no ffi connection is left. */
async function pollerLoop() {
  pollerRunning = true;
  try {
    let lastMacro = performance.now();
    while (ffiConns.size > 0) {
      pollOnce(1);
      await null;
      const now = performance.now();
      if (now - lastMacro > 20) {
        await new Promise((r) => setTimeout(r, 0));
        lastMacro = performance.now();
      }
    }
  } finally {
    pollerRunning = false;
  }
}

function sockaddrIn(host: string, port: number): Uint8Array {
  const addr = new Uint8Array(16);
  addr[0] = AF_INET; // sin_family, little-endian u16
  addr[2] = port >> 8; // sin_port, network order
  addr[3] = port & 0xff;
  addr.set(ipv4(host), 4);
  return addr;
}

export function connectFfi(
  url: string,
  h: WsHandlers,
  srcAddr?: string,
): Promise<WsConn> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    if (u.protocol !== "ws:") {
      return reject(new Error(`ffi transport supports ws:// only (${url})`));
    }
    if (!libc) {
      if (Deno.build.os !== "linux") {
        return reject(
          new Error("ffi transport is Linux-only; use --client tcp"),
        );
      }
      libc = openLibc();
      errnoView = new Deno.UnsafePointerView(libc.__errno_location()!);
      epfd = libc.epoll_create1(SOCK_CLOEXEC);
      if (epfd < 0) return reject(new Error(`epoll_create1 errno ${errno()}`));
    }
    let addr: Uint8Array, local: Uint8Array | null = null;
    try {
      addr = sockaddrIn(u.hostname, Number(u.port || 80));
      if (srcAddr) local = sockaddrIn(srcAddr, 0);
    } catch (e) {
      return reject(e);
    }
    const fd = libc.socket(
      AF_INET,
      SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
      0,
    );
    if (fd < 0) {
      return reject(
        new Error(`socket errno ${errno()} (file descriptor limit? ulimit -n)`),
      );
    }
    const one = new Uint8Array(new Int32Array([1]).buffer);
    libc.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, one, 4);
    if (local) {
      libc.setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, one, 4); // port chosen at connect()
      if (libc.bind(fd, local, 16) < 0) {
        const e = errno();
        libc.close(fd);
        return reject(new Error(`bind ${srcAddr} errno ${e}`));
      }
    }
    const r = libc.connect(fd, addr, 16);
    if (r < 0 && errno() !== EINPROGRESS) {
      const e = errno();
      libc.close(fd);
      return reject(new Error(`connect errno ${e}`));
    }
    const c = new FfiWs(fd, h, upgradeRequest(u), resolve, reject);
    ffiConns.set(fd, c);
    epollCtl(EPOLL_CTL_ADD, fd, EPOLLOUT); // writable = connected (or failed)
    if (!pollerRunning) pollerLoop();
  });
}
