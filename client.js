// Generated from client.ts by tools/build_client.ts (deno task build:client); do not edit.
// deno-lint-ignore-file
// client.ts
var PROTOCOL = "wsgate.v1";
var TERMINAL_CODES = /* @__PURE__ */ new Set([
  1e3,
  1002,
  1003,
  1007,
  1008,
  1009,
]);
var SERVICE_RESTART = 1012;
var STABLE_MS = 5e3;
var DROP_TIMEOUT = 3008;
var DROP_PROTOCOL = 3002;
var ClientError = class extends Error {
  /** What went wrong. */
  code;
  /**
   * Makes an error with a code and a message that says what to do.
   *
   * @param code What went wrong.
   * @param message What went wrong and what to do about it.
   */
  constructor(code, message) {
    super(message);
    this.name = "ClientError";
    this.code = code;
  }
};
var GatewayClient = class extends EventTarget {
  #urls;
  #settings;
  #state = "connecting";
  #socket;
  /** The URL the next attempt uses, as an index into #urls. */
  #next = 0;
  /** The URL of the current or last attempt. */
  #url;
  /** Failed attempts (and short-lived connections) in a row. */
  #failures = 0;
  /** When the current connection was welcomed (performance.now()). */
  #openedAt = 0;
  #clientId = "";
  #recovered = false;
  #token;
  /** The seq of the last data frame received. */
  #seq = 0;
  /** Data frames received and not yet acknowledged. */
  #unacked = 0;
  #held = [];
  #heldBytes = 0;
  #retryTimer;
  #connectTimer;
  #pingTimer;
  #pongTimer;
  #ackTimer;
  /**
   * Starts connecting to the first of `urls`; use {@linkcode connect}.
   *
   * @param urls The service URLs, tried in turn.
   * @param settings The options, every default filled in.
   */
  constructor(urls, settings) {
    super();
    this.#urls = urls;
    this.#settings = settings;
    this.#url = urls[0];
    this.#open();
  }
  /** The clientId of the current or last connection ("" before the first). */
  get clientId() {
    return this.#clientId;
  }
  /** Whether the current or last connection recovered its session. */
  get recovered() {
    return this.#recovered;
  }
  /** Where the client is; see {@linkcode ClientState}. */
  get state() {
    return this.#state;
  }
  /** The URL of the current or last connection attempt. */
  get url() {
    return this.#url;
  }
  /** How many messages `send` holds until the client is connected. */
  get bufferedMessages() {
    return this.#held.length;
  }
  /** How many bytes `send` holds until the client is connected. */
  get bufferedBytes() {
    return this.#heldBytes;
  }
  addEventListener(type, listener, options) {
    super.addEventListener(type, listener, options);
  }
  removeEventListener(type, listener, options) {
    super.removeEventListener(type, listener, options);
  }
  /**
   * Sends a text (string) or binary (`Uint8Array`) message. While the
   * client is not connected, the message is held and sent, in order, right
   * after the next welcome, before the `open` event.
   *
   * What was handed to a socket that then breaks may be lost: the protocol
   * acknowledges what the service sends, not what it receives.
   *
   * @param message The message, as the service's `onMessage` gets it.
   * @throws {ClientError} `buffer_full` when the client is not connected
   * and holds `maxBufferedMessages` messages or `maxBufferedBytes` bytes
   * with this one; `closed` after the client closed for good.
   */
  send(message) {
    if (typeof message !== "string" && !(message instanceof Uint8Array)) {
      throw new TypeError(
        `Cannot send ${typeof message}: send a string or a Uint8Array`,
      );
    }
    if (this.#state === "closed") {
      throw new ClientError(
        "closed",
        "Cannot send: the client is closed; connect() a new one",
      );
    }
    const socket = this.#socket;
    if (
      this.#state === "open" && socket !== void 0 &&
      socket.readyState === WebSocket.OPEN
    ) {
      this.#write(socket, message);
      return;
    }
    const bytes = typeof message === "string"
      ? utf8Length(message)
      : message.byteLength;
    const { maxBufferedMessages, maxBufferedBytes } = this.#settings;
    if (this.#held.length >= maxBufferedMessages) {
      throw new ClientError(
        "buffer_full",
        `Cannot hold the message until the client reconnects: ${this.#held.length} messages are held already (maxBufferedMessages); drop it or send it again after "open"`,
      );
    }
    if (this.#heldBytes + bytes > maxBufferedBytes) {
      throw new ClientError(
        "buffer_full",
        `Cannot hold the message of ${bytes} bytes until the client reconnects: ${this.#heldBytes} bytes are held already and maxBufferedBytes is ${maxBufferedBytes}; drop it or send it again after "open"`,
      );
    }
    this.#held.push({
      message,
      bytes,
    });
    this.#heldBytes += bytes;
  }
  /**
   * Ends the session for good: sends close code 1000 (the service forgets
   * the session at once), drops what `send` holds, and never reconnects.
   * The `close` event (code 1000, `reconnecting: false`) is dispatched
   * before this returns. Does nothing when already closed.
   */
  close() {
    if (this.#state === "closed") return;
    const socket = this.#socket;
    this.#detach();
    if (socket !== void 0) closeQuietly(socket, 1e3, "");
    this.#end(1e3, "");
  }
  /** Starts a connection attempt to the URL at #next. */
  #open() {
    this.#retryTimer = void 0;
    const url = this.#urls[this.#next];
    this.#url = url;
    let socket;
    try {
      socket = new WebSocket(url, PROTOCOL);
    } catch (error) {
      this.#lost(1006, `Cannot connect to ${url}: ${messageOf(error)}`, false);
      return;
    }
    socket.binaryType = "arraybuffer";
    this.#socket = socket;
    let welcomed = false;
    this.#connectTimer = setTimeout(() => {
      this.#drop(
        DROP_TIMEOUT,
        `no welcome from ${url} within ${this.#settings.connectTimeoutMs} ms`,
      );
    }, this.#settings.connectTimeoutMs);
    socket.onopen = () => {
      if (socket.protocol !== PROTOCOL) {
        this.#drop(
          DROP_PROTOCOL,
          `${url} did not select the ${PROTOCOL} subprotocol`,
        );
        return;
      }
      const hello = this.#token === void 0
        ? {
          type: "hello",
        }
        : {
          type: "hello",
          token: this.#token,
          seq: this.#seq,
        };
      socket.send(JSON.stringify(hello));
    };
    socket.onmessage = (event) => {
      clearTimeout(this.#pongTimer);
      this.#pongTimer = void 0;
      if (!welcomed) {
        welcomed = this.#welcome(socket, event.data);
        return;
      }
      this.#receive(event.data);
    };
    socket.onclose = (event) => {
      this.#detach();
      const code = event.code >= 1e3 ? event.code : 1006;
      this.#lost(code, event.reason, welcomed);
    };
  }
  /** Handles the first frame; returns whether it was a welcome. */
  #welcome(socket, data) {
    const welcome = typeof data === "string" && data.startsWith("{")
      ? parseJson(data)
      : void 0;
    if (
      welcome?.type !== "welcome" || typeof welcome.clientId !== "string" ||
      typeof welcome.token !== "string" || typeof welcome.seq !== "number"
    ) {
      this.#drop(DROP_PROTOCOL, "the first frame was not a welcome");
      return false;
    }
    clearTimeout(this.#connectTimer);
    this.#connectTimer = void 0;
    this.#clientId = welcome.clientId;
    this.#token = welcome.token;
    this.#recovered = welcome.recovered === true;
    this.#seq = this.#recovered
      ? Math.max(this.#seq, welcome.seq)
      : welcome.seq;
    this.#unacked = 0;
    this.#openedAt = performance.now();
    this.#state = "open";
    this.#pingTimer = setInterval(
      () => this.#ping(socket),
      this.#settings.pingIntervalMs,
    );
    const held = this.#held;
    this.#held = [];
    this.#heldBytes = 0;
    for (const { message } of held) this.#write(socket, message);
    this.dispatchEvent(
      new CustomEvent("open", {
        detail: {
          clientId: this.#clientId,
          recovered: this.#recovered,
        },
      }),
    );
    return true;
  }
  /** Handles a frame after the welcome. */
  #receive(data) {
    let seq;
    let payload;
    if (typeof data === "string") {
      if (data.startsWith("{")) return;
      const colon = data.indexOf(":");
      seq = colon > 0 ? parseSeq(data.slice(0, colon)) : NaN;
      payload = data.slice(colon + 1);
    } else if (data instanceof ArrayBuffer) {
      const bytes = new Uint8Array(data);
      const [value, length] = readVarint(bytes);
      seq = value;
      payload = bytes.subarray(length);
    } else {
      seq = NaN;
      payload = "";
    }
    if (Number.isNaN(seq)) {
      this.#drop(DROP_PROTOCOL, "a data frame without a valid seq");
      return;
    }
    if (seq <= this.#seq) return;
    this.#seq = seq;
    this.#unacked++;
    if (this.#unacked >= this.#settings.ackFrames) {
      this.#ack();
    } else {
      this.#ackTimer ??= setTimeout(
        () => this.#ack(),
        this.#settings.ackDelayMs,
      );
    }
    this.dispatchEvent(
      new MessageEvent("message", {
        data: payload,
      }),
    );
  }
  #ack() {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = void 0;
    if (this.#unacked === 0 || this.#socket === void 0) return;
    this.#unacked = 0;
    this.#control({
      type: "ack",
      seq: this.#seq,
    });
  }
  #ping(socket) {
    if (this.#socket !== socket) return;
    clearTimeout(this.#ackTimer);
    this.#ackTimer = void 0;
    this.#unacked = 0;
    this.#control({
      type: "ping",
      seq: this.#seq,
    });
    this.#pongTimer ??= setTimeout(() => {
      this.#drop(
        DROP_TIMEOUT,
        `heartbeat: nothing received within ${this.#settings.pongTimeoutMs} ms of a ping`,
      );
    }, this.#settings.pongTimeoutMs);
  }
  #control(frame) {
    const socket = this.#socket;
    if (socket?.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(frame));
    }
  }
  #write(socket, message) {
    socket.send(typeof message === "string" ? `:${message}` : message);
  }
  /**
   * Gives up on the current socket at once (no waiting for a close
   * handshake that may never come) and goes on as if it had closed.
   */
  #drop(code, reason) {
    const socket = this.#socket;
    if (socket === void 0) return;
    const welcomed = this.#state === "open";
    this.#detach();
    closeQuietly(socket, code, "");
    this.#lost(code, reason, welcomed);
  }
  /** Forgets the current socket and its timers. */
  #detach() {
    const socket = this.#socket;
    if (socket !== void 0) {
      socket.onopen = null;
      socket.onmessage = null;
      socket.onclose = null;
    }
    this.#socket = void 0;
    for (
      const timer of [
        this.#connectTimer,
        this.#pongTimer,
        this.#ackTimer,
      ]
    ) {
      clearTimeout(timer);
    }
    clearInterval(this.#pingTimer);
    this.#connectTimer = void 0;
    this.#pongTimer = void 0;
    this.#ackTimer = void 0;
    this.#pingTimer = void 0;
  }
  /**
   * A connection or attempt ended: stops for good on a terminal code,
   * otherwise schedules the next attempt.
   */
  #lost(code, reason, welcomed) {
    if (this.#state === "closed") return;
    if (TERMINAL_CODES.has(code) || code >= 4e3 && code <= 4499) {
      this.#end(code, reason);
      return;
    }
    let delay;
    if (code === SERVICE_RESTART) {
      this.#advance();
      delay = Math.random() * this.#settings.minDelayMs;
    } else if (welcomed) {
      if (performance.now() - this.#openedAt >= STABLE_MS) this.#failures = 0;
      delay = this.#backoff();
    } else {
      this.#advance();
      delay = this.#backoff();
    }
    this.#state = this.#clientId === "" ? "connecting" : "reconnecting";
    if (welcomed) {
      this.dispatchEvent(
        new CustomEvent("close", {
          detail: {
            code,
            reason,
            reconnecting: true,
          },
        }),
      );
      if (this.#state === "closed") return;
    }
    this.#retryTimer = setTimeout(() => this.#open(), delay);
  }
  /** The wait before the next attempt; counts one more failure. */
  #backoff() {
    const { minDelayMs, maxDelayMs } = this.#settings;
    const cap = Math.min(maxDelayMs, minDelayMs * 2 ** this.#failures);
    this.#failures++;
    return Math.max(minDelayMs, cap * (0.5 + Math.random() / 2));
  }
  #advance() {
    this.#next = (this.#next + 1) % this.#urls.length;
  }
  /** Closes for good and says so. */
  #end(code, reason) {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = void 0;
    this.#state = "closed";
    this.#token = void 0;
    this.#held = [];
    this.#heldBytes = 0;
    this.dispatchEvent(
      new CustomEvent("close", {
        detail: {
          code,
          reason,
          reconnecting: false,
        },
      }),
    );
  }
};
function connect(url, options = {}) {
  const urls = typeof url === "string"
    ? [
      url,
    ]
    : [
      ...url,
    ];
  if (urls.length === 0 || urls.some((u) => typeof u !== "string")) {
    throw new TypeError(
      "Cannot connect: give a WebSocket URL or a non-empty array of them",
    );
  }
  const {
    minDelayMs = 250,
    maxDelayMs = 1e4,
    connectTimeoutMs = 1e4,
    pingIntervalMs = 2e4,
    pongTimeoutMs = 1e4,
    ackFrames = 64,
    ackDelayMs = 1e3,
    maxBufferedMessages = 1e3,
    maxBufferedBytes = 1024 * 1024,
  } = options;
  const settings = {
    minDelayMs,
    maxDelayMs,
    connectTimeoutMs,
    pingIntervalMs,
    pongTimeoutMs,
    ackFrames,
    ackDelayMs,
    maxBufferedMessages,
    maxBufferedBytes,
  };
  for (const [name, value] of Object.entries(settings)) {
    if (typeof value !== "number" || !(value > 0) || value === Infinity) {
      throw new RangeError(
        `Cannot connect: '${name}' must be a positive number: current value is ${value}`,
      );
    }
  }
  if (maxDelayMs < minDelayMs) {
    throw new RangeError(
      `Cannot connect: 'maxDelayMs' must be at least 'minDelayMs' (${minDelayMs}): current value is ${maxDelayMs}`,
    );
  }
  return new GatewayClient(urls, settings);
}
function readVarint(bytes) {
  let value = 0;
  for (let i = 0; i < bytes.length && i < 8; i++) {
    const byte = bytes[i];
    value += (byte & 127) * 2 ** (7 * i);
    if (byte < 128) {
      return [
        value,
        i + 1,
      ];
    }
  }
  return [
    NaN,
    0,
  ];
}
function parseSeq(text) {
  return /^[1-9][0-9]{0,15}$/.test(text) ? Number(text) : NaN;
}
function parseJson(text) {
  try {
    const value = JSON.parse(text);
    return typeof value === "object" && value !== null ? value : void 0;
  } catch {
    return void 0;
  }
}
function utf8Length(text) {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 128) bytes += 1;
    else if (unit < 2048) bytes += 2;
    else if (unit >= 55296 && unit <= 56319) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}
function closeQuietly(socket, code, reason) {
  try {
    socket.close(code, reason);
  } catch {
  }
}
function messageOf(error) {
  return error instanceof Error ? error.message : String(error);
}
export { ClientError, connect, GatewayClient };
