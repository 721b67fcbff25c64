// WebSocket clients for the load generator (bench/load.ts). Three kinds, the
// same interface:
//
//   "ffi"     the default on Linux. Non-blocking libc sockets driven by one
//             epoll instance through Deno's FFI. One read system call takes
//             everything a socket has queued, and no Deno async op is paid
//             per socket or per message, which keeps the load generator's
//             own CPU per received message low: most of what is left is the
//             kernel's recv. With thousands of sockets, nearly every read
//             finds a single small frame, so a per-read op would dominate.
//   "tcp"     the same framing on Deno.connect: one read loop per socket.
//   "native"  Deno's built-in WebSocket, as a cross-check of the other two.
//
// The ffi and tcp kinds speak RFC 6455 themselves: no extensions, client
// frames masked with the all-zero key (a valid key that leaves the payload
// as it is), ping answered with pong, fragmented messages put together.
// Binary messages are handed over as views into a reused buffer: they are
// valid only during the callback.

/** Which client implementation to use. */
export type ClientKind = "ffi" | "tcp" | "native";

/** The events of one socket. */
export interface Listener {
  /** A text message. */
  text(socket: ClientSocket, text: string): void;
  /** A binary message; the view is valid only during the call. */
  binary(socket: ClientSocket, bytes: Uint8Array): void;
  /** The socket closed after it was open (not called when opening fails). */
  closed(socket: ClientSocket, reason: string): void;
}

/** One client WebSocket. */
export interface ClientSocket {
  /** Sends one message: a string as a text frame, bytes as a binary frame. */
  send(message: string | Uint8Array): void;
  /** Sends several messages with as few writes as the kind allows. */
  sendAll(messages: readonly (string | Uint8Array)[]): void;
  /** Starts the closing handshake (bounded: the socket goes soon after). */
  close(): void;
  /** True once the socket is closed. */
  readonly isClosed: boolean;
}

/** How to open a socket. */
export interface OpenOptions {
  /** Local IPv4 address to bind before connecting (ffi only). */
  localAddress?: string | undefined;
  /** Give up the handshake after this long (default 30 s). */
  timeoutMs?: number | undefined;
  /**
   * A WebSocket subprotocol to offer (`Sec-WebSocket-Protocol`); the
   * handshake fails unless the server selects it. None by default.
   */
  protocol?: string | undefined;
}

/** What the clients did, for the load generator's report. */
export const clientCounters = {
  /** epoll_wait calls (ffi). */
  waits: 0,
  /** Socket events returned by epoll_wait (ffi). */
  events: 0,
  /** Read calls (ffi and tcp). */
  reads: 0,
  /** Frames parsed (ffi and tcp). */
  frames: 0,
};

/**
 * Opens a client WebSocket to `url` (ws:// only). Resolves once the
 * handshake is done; the listener may get messages from then on.
 */
export function openClient(
  kind: ClientKind,
  url: string,
  listener: Listener,
  options: OpenOptions = {},
): Promise<ClientSocket> {
  const target = new URL(url);
  if (target.protocol !== "ws:") {
    return Promise.reject(new Error(`only ws:// URLs are supported: ${url}`));
  }
  if (options.localAddress !== undefined && kind !== "ffi") {
    return Promise.reject(new Error("a local address needs the ffi client"));
  }
  const timeoutMs = options.timeoutMs ?? 30_000;
  const protocol = options.protocol;
  switch (kind) {
    case "ffi":
      return EpollSocket.open(
        target,
        listener,
        options.localAddress,
        timeoutMs,
        protocol,
      );
    case "tcp":
      return StreamSocket.open(target, listener, timeoutMs, protocol);
    case "native":
      return openNative(target, listener, timeoutMs, protocol);
  }
}

// ---------------------------------------------------------------- frames

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();
const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
/** The largest message accepted from a server. */
const MAX_MESSAGE = 16 * 1024 * 1024;

/** Size of a masked client frame header for a payload of `n` bytes. */
function headerSize(n: number): number {
  return n < 126 ? 6 : n < 0x10000 ? 8 : 14;
}

/**
 * Writes one final, masked (all-zero key) client frame at `at`; returns
 * the offset after it.
 */
function putFrame(
  out: Uint8Array,
  at: number,
  opcode: number,
  payload: Uint8Array,
): number {
  const n = payload.length;
  out[at] = 0x80 | opcode;
  if (n < 126) {
    out[at + 1] = 0x80 | n;
  } else if (n < 0x10000) {
    out[at + 1] = 0x80 | 126;
    out[at + 2] = n >>> 8;
    out[at + 3] = n & 0xff;
  } else {
    out[at + 1] = 0x80 | 127;
    const view = new DataView(out.buffer, out.byteOffset + at + 2, 8);
    view.setBigUint64(0, BigInt(n));
  }
  const start = at + headerSize(n);
  out.fill(0, start - 4, start); // the masking key: four zero bytes
  out.set(payload, start);
  return start + n;
}

/** The client frames of `messages`, one after the other, in one buffer. */
function encodeMessages(
  messages: readonly (string | Uint8Array)[],
): Uint8Array {
  const parts: { opcode: number; payload: Uint8Array }[] = [];
  let total = 0;
  for (const message of messages) {
    const text = typeof message === "string";
    const payload = text ? utf8.encode(message) : message;
    parts.push({ opcode: text ? OP_TEXT : OP_BINARY, payload });
    total += headerSize(payload.length) + payload.length;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const { opcode, payload } of parts) {
    at = putFrame(out, at, opcode, payload);
  }
  return out;
}

function encodeControl(opcode: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(headerSize(payload.length) + payload.length);
  putFrame(out, 0, opcode, payload);
  return out;
}

/** The HTTP upgrade request for `target`, offering `protocol` if set. */
function upgradeRequest(target: URL, protocol?: string): Uint8Array {
  const nonce = new Uint8Array(16);
  crypto.getRandomValues(nonce);
  const key = btoa(String.fromCharCode(...nonce));
  return utf8.encode(
    [
      `GET ${target.pathname}${target.search} HTTP/1.1`,
      `Host: ${target.host}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Key: ${key}`,
      "Sec-WebSocket-Version: 13",
      ...(protocol === undefined
        ? []
        : [`Sec-WebSocket-Protocol: ${protocol}`]),
      "",
      "",
    ].join("\r\n"),
  );
}

/** Offset just past the blank line ending an HTTP head, or -1. */
function endOfHead(bytes: Uint8Array, length: number): number {
  for (let i = 3; i < length; i++) {
    if (
      bytes[i] === 0x0a && bytes[i - 1] === 0x0d && bytes[i - 2] === 0x0a &&
      bytes[i - 3] === 0x0d
    ) {
      return i + 1;
    }
  }
  return -1;
}

/**
 * Throws unless the response head accepts the upgrade, plainly, and
 * selects `protocol` when one was offered.
 */
function checkUpgradeResponse(head: string, protocol?: string): void {
  const status = head.slice(0, head.indexOf("\r\n"));
  if (!/^HTTP\/1\.1 101 /.test(status)) {
    throw new Error(`upgrade refused: ${status}`);
  }
  if (/\r\nsec-websocket-extensions:/i.test(head)) {
    throw new Error("the server chose an extension; none is supported");
  }
  const selected = /\r\nsec-websocket-protocol:[ \t]*([^\r]*)/i.exec(head)
    ?.[1]?.trim();
  if (selected !== protocol) {
    throw new Error(
      protocol === undefined
        ? `the server selected a subprotocol that was not offered: ${selected}`
        : `the server did not select the subprotocol ${protocol}`,
    );
  }
}

/**
 * RFC 6455 on top of some byte transport: the subclasses read and write
 * bytes, this class turns them into messages and back.
 */
abstract class FramedSocket implements ClientSocket {
  protected readonly listener: Listener;
  /** True once our close frame went out or is queued. */
  protected closeSent = false;
  #closed = false;
  #fragments: Uint8Array[] = [];
  #fragmentOpcode = 0;
  #fragmentBytes = 0;

  constructor(listener: Listener) {
    this.listener = listener;
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  /** Writes bytes to the transport, in order. */
  protected abstract write(bytes: Uint8Array): void;
  /** Releases the transport. Called once. */
  protected abstract release(): void;

  send(message: string | Uint8Array): void {
    if (this.#closed || this.closeSent) return;
    const text = typeof message === "string";
    const payload = text ? utf8.encode(message) : message;
    this.write(encodeControl(text ? OP_TEXT : OP_BINARY, payload));
  }

  sendAll(messages: readonly (string | Uint8Array)[]): void {
    if (this.#closed || this.closeSent) return;
    this.write(encodeMessages(messages));
  }

  close(): void {
    if (this.#closed || this.closeSent) return;
    this.closeSent = true;
    this.write(encodeControl(OP_CLOSE, new Uint8Array([0x03, 0xe8]))); // 1000
    this.afterClose();
  }

  /** Called after our close frame was handed to write(). */
  protected afterClose(): void {}

  /** Closes for good and tells the listener (once). */
  protected finish(reason: string, notify = true): void {
    if (this.#closed) return;
    this.#closed = true;
    this.release();
    if (notify) this.listener.closed(this, reason);
  }

  /**
   * Parses the complete frames in bytes[0, length) and hands their messages
   * to the listener. Returns how many bytes it used; the rest is the start
   * of a frame still incomplete. Throws on a protocol error.
   */
  protected consume(bytes: Uint8Array, length: number): number {
    let at = 0;
    while (!this.#closed && length - at >= 2) {
      const b0 = bytes[at]!;
      const b1 = bytes[at + 1]!;
      if (b1 & 0x80) throw new Error("the server masked a frame");
      let size = b1 & 0x7f;
      let head = 2;
      if (size === 126) {
        if (length - at < 4) break;
        size = (bytes[at + 2]! << 8) | bytes[at + 3]!;
        head = 4;
      } else if (size === 127) {
        if (length - at < 10) break;
        const view = new DataView(bytes.buffer, bytes.byteOffset + at + 2, 8);
        const big = view.getBigUint64(0);
        if (big > BigInt(MAX_MESSAGE)) throw new Error("frame too large");
        size = Number(big);
        head = 10;
      }
      if (size > MAX_MESSAGE) throw new Error("frame too large");
      if (length - at < head + size) break;
      const payload = bytes.subarray(at + head, at + head + size);
      at += head + size;
      clientCounters.frames++;
      this.#frame((b0 & 0x80) !== 0, b0 & 0x0f, payload);
    }
    return at;
  }

  #frame(fin: boolean, opcode: number, payload: Uint8Array): void {
    if (opcode >= 0x8) {
      if (opcode === OP_CLOSE) {
        if (!this.closeSent) {
          this.closeSent = true;
          this.write(encodeControl(OP_CLOSE, payload.slice(0, 2)));
        }
        this.finish("closed by the server");
      } else if (opcode === OP_PING) {
        this.write(encodeControl(0xa, payload));
      }
      return;
    }
    if (opcode !== OP_CONTINUATION && fin && this.#fragments.length === 0) {
      this.#deliver(opcode, payload);
      return;
    }
    if (opcode !== OP_CONTINUATION) {
      this.#fragmentOpcode = opcode;
      this.#fragments = [];
      this.#fragmentBytes = 0;
    }
    this.#fragments.push(payload.slice());
    this.#fragmentBytes += payload.length;
    if (this.#fragmentBytes > MAX_MESSAGE) throw new Error("message too large");
    if (!fin) return;
    const whole = new Uint8Array(this.#fragmentBytes);
    let at = 0;
    for (const part of this.#fragments) {
      whole.set(part, at);
      at += part.length;
    }
    this.#fragments = [];
    this.#fragmentBytes = 0;
    this.#deliver(this.#fragmentOpcode, whole);
  }

  #deliver(opcode: number, payload: Uint8Array): void {
    if (opcode === OP_TEXT) this.listener.text(this, fromUtf8.decode(payload));
    else if (opcode === OP_BINARY) this.listener.binary(this, payload);
  }
}

// ---------------------------------------------------------------- native

function openNative(
  target: URL,
  listener: Listener,
  timeoutMs: number,
  protocol: string | undefined,
): Promise<ClientSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(target, protocol === undefined ? [] : [protocol]);
    ws.binaryType = "arraybuffer";
    let open = false;
    let closed = false;
    const socket: ClientSocket = {
      send: (message) => ws.send(message),
      sendAll: (messages) => {
        for (const message of messages) ws.send(message);
      },
      close: () => ws.close(1000),
      get isClosed() {
        return closed;
      },
    };
    const timer = setTimeout(() => {
      if (!open) {
        ws.close();
        reject(new Error("handshake timed out"));
      }
    }, timeoutMs);
    ws.onopen = () => {
      open = true;
      clearTimeout(timer);
      if (ws.protocol !== (protocol ?? "")) {
        ws.close();
        reject(
          new Error(`the server did not select the subprotocol ${protocol}`),
        );
      } else resolve(socket);
    };
    ws.onmessage = (event) => {
      const data: unknown = event.data;
      if (typeof data === "string") listener.text(socket, data);
      else listener.binary(socket, new Uint8Array(data as ArrayBuffer));
    };
    ws.onerror = () => {};
    ws.onclose = (event) => {
      closed = true;
      clearTimeout(timer);
      if (open) listener.closed(socket, `close code ${event.code}`);
      else reject(new Error(`closed during the handshake (${event.code})`));
    };
  });
}

// ---------------------------------------------------------------- tcp

/** The framing on a Deno TCP connection; one read loop per socket. */
class StreamSocket extends FramedSocket {
  readonly #conn: Deno.TcpConn;
  #queue: Uint8Array[] = [];
  #writing = false;

  private constructor(conn: Deno.TcpConn, listener: Listener) {
    super(listener);
    this.#conn = conn;
  }

  static async open(
    target: URL,
    listener: Listener,
    timeoutMs: number,
    protocol: string | undefined,
  ): Promise<ClientSocket> {
    const conn = await Deno.connect({
      hostname: target.hostname.replace(/^\[(.*)\]$/, "$1"),
      port: Number(target.port || 80),
    });
    const timer = setTimeout(() => {
      try {
        conn.close();
      } catch { /* closed already */ }
    }, timeoutMs);
    try {
      conn.setNoDelay(true);
      const request = upgradeRequest(target, protocol);
      for (let at = 0; at < request.length;) {
        at += await conn.write(request.subarray(at));
      }
      let buffer = new Uint8Array(4096);
      let length = 0;
      let end = -1;
      while (end < 0) {
        if (length === buffer.length) {
          if (length >= 65536) throw new Error("upgrade response too long");
          const bigger = new Uint8Array(buffer.length * 2);
          bigger.set(buffer);
          buffer = bigger;
        }
        const n = await conn.read(buffer.subarray(length));
        if (n === null) {
          throw new Error("connection closed during the handshake");
        }
        length += n;
        end = endOfHead(buffer, length);
      }
      checkUpgradeResponse(fromUtf8.decode(buffer.subarray(0, end)), protocol);
      clearTimeout(timer);
      const socket = new StreamSocket(conn, listener);
      // Messages that came with the response wait until the caller holds
      // the socket: the read loop starts on the next turn.
      const early = buffer.slice(end, length);
      setTimeout(() => socket.#readLoop(early), 0);
      return socket;
    } catch (error) {
      clearTimeout(timer);
      try {
        conn.close();
      } catch { /* closed already */ }
      throw error;
    }
  }

  protected write(bytes: Uint8Array): void {
    if (this.isClosed) return;
    this.#queue.push(bytes);
    if (!this.#writing) this.#drain();
  }

  protected override afterClose(): void {
    if (!this.#writing) this.finish("closed by the client", false);
  }

  protected release(): void {
    try {
      this.#conn.close();
    } catch { /* closed already */ }
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && !this.isClosed) {
        const chunks = this.#queue;
        this.#queue = [];
        const bytes = chunks.length === 1 ? chunks[0]! : concat(chunks);
        for (let at = 0; at < bytes.length;) {
          at += await this.#conn.write(bytes.subarray(at));
        }
      }
    } catch (error) {
      this.finish(`write failed: ${(error as Error).message}`);
    } finally {
      this.#writing = false;
    }
    if (this.closeSent) this.finish("closed by the client", false);
  }

  async #readLoop(early: Uint8Array): Promise<void> {
    let buffer = new Uint8Array(Math.max(65536, early.length * 2));
    buffer.set(early);
    let length = early.length;
    try {
      while (!this.isClosed) {
        const used = this.consume(buffer, length);
        if (this.isClosed) return;
        buffer.copyWithin(0, used, length);
        length -= used;
        if (length === buffer.length) {
          const bigger = new Uint8Array(buffer.length * 2);
          bigger.set(buffer);
          buffer = bigger;
        }
        clientCounters.reads++;
        const n = await this.#conn.read(buffer.subarray(length));
        if (n === null) return this.finish("the server closed the connection");
        length += n;
      }
    } catch (error) {
      this.finish(`read failed: ${(error as Error).message}`);
    }
  }
}

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const chunk of chunks) total += chunk.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

// ---------------------------------------------------------------- ffi

const AF_INET = 2;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_ERROR = 4;
const IPPROTO_IP = 0;
const IP_BIND_ADDRESS_NO_PORT = 24;
const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const MSG_NOSIGNAL = 0x4000;
const EINTR = 4;
const EAGAIN = 11;
const EINPROGRESS = 115;
const EPOLLIN = 0x001;
const EPOLLOUT = 0x004;
const EPOLLERR = 0x008;
const EPOLLHUP = 0x010;
const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CTL_MOD = 3;
/** struct epoll_event: packed (12 bytes) on x86-64, 16 bytes elsewhere. */
const EVENT_SIZE = Deno.build.arch === "x86_64" ? 12 : 16;
const EVENT_DATA = Deno.build.arch === "x86_64" ? 4 : 8;
const EVENTS_PER_WAIT = 1024;
/** How long the poller may run without letting timers and other I/O in. */
const MAX_BUSY_MS = 4;
/** How long a wait on the main thread may block it. */
const SPIN_WAIT_MS = 1;
/** How long one idle wait lasts; the poller leaves when no socket is left. */
const IDLE_WAIT_MS = 25;

const LIBC_SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  setsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "u32"],
    result: "i32",
  },
  getsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "buffer"],
    result: "i32",
  },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "i64" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "i64" },
  close: { parameters: ["i32"], result: "i32" },
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
  epoll_wait_in_thread: {
    name: "epoll_wait",
    parameters: ["i32", "buffer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

/**
 * One epoll instance and the sockets registered with it. The poller runs
 * while at least one socket is registered: it takes ready events without
 * blocking while there are some, and otherwise waits in a thread of Deno's
 * pool (a non-blocking FFI call), so that timers keep firing.
 */
class Poller {
  readonly libc: Libc;
  readonly #epfd: number;
  readonly #errno: Deno.UnsafePointerView;
  readonly #sockets = new Map<number, EpollSocket>();
  readonly #ready = new Uint8Array(EVENT_SIZE * EVENTS_PER_WAIT);
  readonly #readyView = new DataView(this.#ready.buffer);
  readonly #waited = new Uint8Array(EVENT_SIZE * EVENTS_PER_WAIT);
  readonly #waitedView = new DataView(this.#waited.buffer);
  readonly #control = new Uint8Array(EVENT_SIZE);
  readonly #controlView = new DataView(this.#control.buffer);
  #running = false;
  /** Shared receive buffer: every read lands here first. */
  inbox = new Uint8Array(1 << 20);
  /** The size argument for a read into all of `inbox`. */
  inboxSize = BigInt(this.inbox.length);

  constructor() {
    if (Deno.build.os !== "linux") {
      throw new Error("the ffi client needs Linux; use --client tcp");
    }
    this.libc = Deno.dlopen("libc.so.6", LIBC_SYMBOLS).symbols;
    this.#errno = new Deno.UnsafePointerView(this.libc.__errno_location()!);
    this.#epfd = this.libc.epoll_create1(SOCK_CLOEXEC);
    if (this.#epfd < 0) throw new Error(`epoll_create1: errno ${this.errno()}`);
  }

  /** errno of the calling (main) thread. */
  errno(): number {
    return this.#errno.getInt32();
  }

  watch(socket: EpollSocket, events: number): void {
    this.#sockets.set(socket.fd, socket);
    this.#ctl(EPOLL_CTL_ADD, socket.fd, events);
    if (!this.#running) this.#run();
  }

  rewatch(socket: EpollSocket, events: number): void {
    this.#ctl(EPOLL_CTL_MOD, socket.fd, events);
  }

  unwatch(socket: EpollSocket): void {
    this.#sockets.delete(socket.fd);
    this.#ctl(EPOLL_CTL_DEL, socket.fd, 0);
  }

  #ctl(op: number, fd: number, events: number): void {
    this.#controlView.setUint32(0, events, true);
    this.#controlView.setUint32(EVENT_DATA, fd, true);
    this.#controlView.setUint32(EVENT_DATA + 4, 0, true);
    const result = this.libc.epoll_ctl(this.#epfd, op, fd, this.#control);
    if (result < 0 && op !== EPOLL_CTL_DEL) {
      throw new Error(`epoll_ctl: errno ${this.errno()}`);
    }
  }

  async #run(): Promise<void> {
    this.#running = true;
    try {
      let busySince = performance.now();
      while (this.#sockets.size > 0) {
        let n = 0;
        let fromThread = false;
        if (performance.now() - busySince < MAX_BUSY_MS) {
          // Blocks this thread for at most SPIN_WAIT_MS: it returns as soon
          // as a socket is ready, and sleeps in the kernel meanwhile.
          clientCounters.waits++;
          n = this.libc.epoll_wait(
            this.#epfd,
            this.#ready,
            EVENTS_PER_WAIT,
            SPIN_WAIT_MS,
          );
        }
        if (n <= 0) {
          // Nothing ready (or time to let the rest of the process run): wait
          // off the main thread; timers and other I/O run meanwhile.
          clientCounters.waits++;
          n = await this.libc.epoll_wait_in_thread(
            this.#epfd,
            this.#waited,
            EVENTS_PER_WAIT,
            n < 0 ? 0 : IDLE_WAIT_MS,
          );
          fromThread = true;
          busySince = performance.now();
        }
        if (n <= 0) continue; // timeout, or EINTR
        clientCounters.events += n;
        this.#dispatch(
          fromThread ? this.#waitedView : this.#readyView,
          n,
        );
        await null; // let promise reactions of the handlers run
      }
    } finally {
      this.#running = false;
    }
  }

  #dispatch(view: DataView, n: number): void {
    for (let k = 0; k < n; k++) {
      const events = view.getUint32(k * EVENT_SIZE, true);
      const fd = view.getUint32(k * EVENT_SIZE + EVENT_DATA, true);
      const socket = this.#sockets.get(fd);
      if (socket === undefined) continue;
      if (events & EPOLLOUT) socket.writable();
      if (socket.isClosed) continue;
      if (events & EPOLLIN) socket.readable();
      else if (events & (EPOLLERR | EPOLLHUP)) socket.broken();
    }
  }
}

let poller: Poller | undefined;

/** Cached size arguments for send(): one BigInt per length seen. */
const sizeArgs: bigint[] = [];
function sizeArg(n: number): bigint {
  if (n >= 65536) return BigInt(n);
  return sizeArgs[n] ??= BigInt(n);
}

/** struct sockaddr_in for an IPv4 address and port. */
function socketAddress(host: string, port: number): Uint8Array {
  const address = host === "localhost" ? "127.0.0.1" : host;
  const parts = address.split(".").map(Number);
  if (
    parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p > 255)
  ) {
    throw new Error(`the ffi client needs an IPv4 address, not ${host}`);
  }
  const out = new Uint8Array(16);
  new DataView(out.buffer).setUint16(0, AF_INET, true);
  new DataView(out.buffer).setUint16(2, port, false);
  out.set(parts, 4);
  return out;
}

/** Stages of an EpollSocket. */
const CONNECTING = 0, UPGRADING = 1, OPEN = 2;

/** A client WebSocket on a non-blocking libc socket. */
class EpollSocket extends FramedSocket {
  readonly fd: number;
  readonly #poller: Poller;
  #stage = CONNECTING;
  #request: Uint8Array;
  /** The subprotocol offered, which the response must select. */
  #protocol: string | undefined;
  /** Bytes received but not used yet (an incomplete frame or head). */
  #carry: Uint8Array | undefined;
  /** Bytes the kernel did not take yet. */
  #unsent: Uint8Array | undefined;
  #settle:
    | { resolve: (s: ClientSocket) => void; reject: (e: Error) => void }
    | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** False until the caller holds the socket (one turn after it opened). */
  #delivering = false;

  private constructor(
    fd: number,
    p: Poller,
    listener: Listener,
    request: Uint8Array,
  ) {
    super(listener);
    this.fd = fd;
    this.#poller = p;
    this.#request = request;
  }

  static open(
    target: URL,
    listener: Listener,
    localAddress: string | undefined,
    timeoutMs: number,
    protocol: string | undefined,
  ): Promise<ClientSocket> {
    return new Promise((resolve, reject) => {
      let p: Poller;
      let remote: Uint8Array;
      let local: Uint8Array | undefined;
      try {
        p = poller ??= new Poller();
        remote = socketAddress(target.hostname, Number(target.port || 80));
        if (localAddress !== undefined) {
          local = socketAddress(localAddress, 0);
        }
      } catch (error) {
        return reject(error);
      }
      const { libc } = p;
      const fd = libc.socket(
        AF_INET,
        SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
        0,
      );
      if (fd < 0) {
        return reject(
          new Error(`socket: errno ${p.errno()} (out of files? ulimit -n)`),
        );
      }
      const on = new Uint8Array(new Int32Array([1]).buffer);
      libc.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, on, 4);
      if (local !== undefined) {
        // The port is picked at connect(), per destination, so each local
        // address gives its own range of ports toward one server port.
        libc.setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, on, 4);
        if (libc.bind(fd, local, 16) < 0) {
          const errno = p.errno();
          libc.close(fd);
          return reject(new Error(`bind ${localAddress}: errno ${errno}`));
        }
      }
      if (libc.connect(fd, remote, 16) < 0) {
        const errno = p.errno();
        if (errno !== EINPROGRESS) {
          libc.close(fd);
          return reject(new Error(`connect: errno ${errno}`));
        }
      }
      const socket = new EpollSocket(
        fd,
        p,
        listener,
        upgradeRequest(target, protocol),
      );
      socket.#protocol = protocol;
      socket.#settle = { resolve, reject };
      socket.#timer = setTimeout(
        () => socket.#fail("handshake timed out"),
        timeoutMs,
      );
      p.watch(socket, EPOLLOUT);
    });
  }

  protected write(bytes: Uint8Array): void {
    if (this.isClosed) return;
    if (this.#unsent !== undefined) {
      this.#unsent = concat([this.#unsent, bytes]);
      return;
    }
    this.#push(bytes);
  }

  /** Writes what the kernel takes now; keeps the rest for EPOLLOUT. */
  #push(bytes: Uint8Array): void {
    const { libc } = this.#poller;
    let at = 0;
    while (at < bytes.length) {
      const rest = at === 0 ? bytes : bytes.subarray(at);
      const n = Number(
        libc.send(this.fd, rest, sizeArg(rest.length), MSG_NOSIGNAL),
      );
      if (n >= 0) {
        at += n;
        continue;
      }
      const errno = this.#poller.errno();
      if (errno === EINTR) continue;
      if (errno === EAGAIN) break;
      return this.#fail(`send: errno ${errno}`);
    }
    if (at < bytes.length) {
      this.#unsent = bytes.slice(at);
      this.#poller.rewatch(this, EPOLLIN | EPOLLOUT);
    }
  }

  protected override afterClose(): void {
    if (this.#unsent === undefined) this.finish("closed by the client", false);
  }

  protected release(): void {
    clearTimeout(this.#timer);
    this.#poller.unwatch(this);
    this.#poller.libc.close(this.fd);
  }

  #fail(reason: string): void {
    if (this.isClosed) return;
    const settle = this.#settle;
    this.#settle = undefined;
    this.finish(reason, settle === undefined);
    settle?.reject(new Error(reason));
  }

  /** EPOLLOUT: the connection is made (or failed), or there is room. */
  writable(): void {
    if (this.#stage === CONNECTING) {
      const value = new Int32Array(1);
      const size = new Uint32Array([4]);
      this.#poller.libc.getsockopt(
        this.fd,
        SOL_SOCKET,
        SO_ERROR,
        new Uint8Array(value.buffer),
        new Uint8Array(size.buffer),
      );
      if (value[0] !== 0) return this.#fail(`connect: errno ${value[0]}`);
      this.#stage = UPGRADING;
      this.#poller.rewatch(this, EPOLLIN);
      this.#push(this.#request);
      return;
    }
    const unsent = this.#unsent;
    this.#unsent = undefined;
    this.#poller.rewatch(this, EPOLLIN);
    if (unsent !== undefined) this.#push(unsent);
    if (this.#unsent === undefined && this.closeSent) {
      this.finish("closed by the client", false);
    }
  }

  /** EPOLLERR or EPOLLHUP without data to read. */
  broken(): void {
    if (this.#stage === CONNECTING) this.writable();
    else this.#fail("the connection broke");
  }

  /** EPOLLIN: read what is queued (after any carried bytes) and use it. */
  readable(): void {
    const p = this.#poller;
    let length = 0;
    const carry = this.#carry;
    if (carry !== undefined) {
      if (carry.length + 65536 > p.inbox.length) {
        p.inbox = new Uint8Array(2 * (carry.length + 65536));
        p.inboxSize = BigInt(p.inbox.length);
      }
      p.inbox.set(carry);
      length = carry.length;
      this.#carry = undefined;
    }
    clientCounters.reads++;
    const n = Number(
      length === 0
        ? p.libc.recv(this.fd, p.inbox, p.inboxSize, 0)
        : p.libc.recv(
          this.fd,
          p.inbox.subarray(length),
          BigInt(p.inbox.length - length),
          0,
        ),
    );
    if (n === 0) return this.#fail("the server closed the connection");
    if (n < 0) {
      const errno = p.errno();
      if (length > 0) this.#carry = p.inbox.slice(0, length);
      if (errno !== EAGAIN && errno !== EINTR) {
        this.#fail(`recv: errno ${errno}`);
      }
      return;
    }
    length += n;
    if (this.#stage === UPGRADING) return this.#upgraded(length);
    this.#use(p.inbox, length);
  }

  #upgraded(length: number): void {
    const inbox = this.#poller.inbox;
    const end = endOfHead(inbox, length);
    if (end < 0) {
      if (length > 65536) return this.#fail("upgrade response too long");
      this.#carry = inbox.slice(0, length);
      return;
    }
    try {
      checkUpgradeResponse(
        fromUtf8.decode(inbox.subarray(0, end)),
        this.#protocol,
      );
    } catch (error) {
      return this.#fail((error as Error).message);
    }
    this.#stage = OPEN;
    clearTimeout(this.#timer);
    if (end < length) this.#carry = inbox.slice(end, length);
    const settle = this.#settle!;
    this.#settle = undefined;
    settle.resolve(this);
    // The caller gets the socket in a promise reaction; frames wait for it.
    queueMicrotask(() => {
      this.#delivering = true;
      const early = this.#carry;
      this.#carry = undefined;
      if (early !== undefined && !this.isClosed) {
        this.#use(early, early.length);
      }
    });
  }

  /** Hands the frames in bytes[0, length) over; carries the rest. */
  #use(bytes: Uint8Array, length: number): void {
    if (!this.#delivering) {
      this.#carry = bytes.slice(0, length);
      return;
    }
    try {
      const used = this.consume(bytes, length);
      if (!this.isClosed && used < length) {
        this.#carry = bytes.slice(used, length);
      }
    } catch (error) {
      this.#fail(`protocol error: ${(error as Error).message}`);
    }
  }
}
