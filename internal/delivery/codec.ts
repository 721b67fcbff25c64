// The compact wire form of deliveries between services (the `packed` field
// of DeliverRequest, described in proto/websocket/v1/gateway.proto).
//
// A delivery is encoded once, whatever the number of peers it goes to, and
// copied into each peer's batch; a batch is the concatenation of its
// deliveries. The receiver checks a whole batch before it applies any of it,
// and applies it without making an object per delivery: binary payloads are
// views into the received bytes, and one payload reaches every recipient as
// the same string or Uint8Array.

import type { Message } from "../../api.ts";
import { GatewayError } from "../../errors.ts";
import type { LocalHub } from "../hub/local_hub.ts";

const ALL = 1;
const CLIENT = 2;
const UIDS = 3;
const GROUPS = 4;
const CLOSE = 5;

const NONE = 0;
const TEXT = 1;
const BINARY = 2;

const MAX_VARINT = 5;

const encoder = new TextEncoder();
// Like protobuf strings: bytes that are not UTF-8 decode to U+FFFD.
const decoder = new TextDecoder();

// Deliveries are encoded into one scratch buffer that grows as needed. An
// encoded delivery is a view of it, valid until the next encode: callers
// copy it at once (DeliveryLink.send does).
let scratch = new Uint8Array(4096);
let pos = 0;

/** Starts a delivery of `kind` whose encoding takes at most `size` bytes. */
function begin(kind: number, size: number): void {
  if (size > scratch.length) {
    scratch = new Uint8Array(Math.max(size, 2 * scratch.length));
  }
  scratch[0] = kind;
  pos = 1;
}

function end(): Uint8Array {
  const view = scratch.subarray(0, pos);
  if (scratch.length > MAX_SCRATCH) scratch = new Uint8Array(4096);
  return view;
}

const MAX_SCRATCH = 1 << 20;

function writeVarint(value: number): void {
  while (value > 0x7f) {
    scratch[pos++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  scratch[pos++] = value;
}

function writeStr(value: string): void {
  const n = value.length;
  if (n < 128) {
    // Short strings (clientIds, most uids and groups): one length byte
    // when they are ASCII, which is checked while copying.
    let at = pos + 1;
    let i = 0;
    for (; i < n; i++) {
      const c = value.charCodeAt(i);
      if (c > 0x7f) break;
      scratch[at++] = c;
    }
    if (i === n) {
      scratch[pos] = n;
      pos = at;
      return;
    }
  }
  writeUtf8(value);
}

function writeUtf8(value: string): void {
  const head = varintSize(value.length * 3);
  const start = pos + head;
  const { written } = encoder.encodeInto(
    value,
    scratch.subarray(start, start + value.length * 3),
  );
  const realHead = varintSize(written);
  if (realHead !== head) {
    scratch.copyWithin(pos + realHead, start, start + written);
  }
  writeVarint(written);
  pos += written;
}

function writeStrs(values: readonly string[]): void {
  writeVarint(values.length);
  for (const value of values) writeStr(value);
}

function writeMessage(message: Message | undefined): void {
  if (message === undefined) {
    scratch[pos++] = NONE;
  } else if (typeof message === "string") {
    scratch[pos++] = TEXT;
    writeUtf8(message);
  } else {
    scratch[pos++] = BINARY;
    writeVarint(message.byteLength);
    scratch.set(message, pos);
    pos += message.byteLength;
  }
}

function varintSize(value: number): number {
  return value < 0x80
    ? 1
    : value < 0x4000
    ? 2
    : value < 0x200000
    ? 3
    : value < 0x10000000
    ? 4
    : 5;
}

/** Worst-case encoded size of a string: length prefix and UTF-8. */
function strSize(value: string): number {
  return MAX_VARINT + value.length * 3;
}

function strsSize(values: readonly string[]): number {
  let size = MAX_VARINT;
  for (const value of values) size += strSize(value);
  return size;
}

function messageSize(message: Message | undefined): number {
  if (message === undefined) return 1;
  return 1 + MAX_VARINT +
    (typeof message === "string" ? message.length * 3 : message.byteLength);
}

/** A delivery to every client, minus `exclude`. */
export function encodeToAll(
  message: Message,
  exclude: readonly string[],
): Uint8Array {
  begin(ALL, 1 + messageSize(message) + strsSize(exclude));
  writeMessage(message);
  writeStrs(exclude);
  return end();
}

/** A delivery to one client. */
export function encodeToClient(clientId: string, message: Message): Uint8Array {
  begin(CLIENT, 1 + strSize(clientId) + messageSize(message));
  writeStr(clientId);
  writeMessage(message);
  return end();
}

/** A delivery to the clients of some uids. */
export function encodeToUids(
  uids: readonly string[],
  message: Message,
): Uint8Array {
  begin(UIDS, 1 + strsSize(uids) + messageSize(message));
  writeStrs(uids);
  writeMessage(message);
  return end();
}

/** A delivery to the clients of some groups, minus `exclude`. */
export function encodeToGroups(
  groups: readonly string[],
  message: Message,
  exclude: readonly string[],
): Uint8Array {
  begin(
    GROUPS,
    1 + strsSize(groups) + messageSize(message) + strsSize(exclude),
  );
  writeStrs(groups);
  writeMessage(message);
  writeStrs(exclude);
  return end();
}

/** Closes a client, after a last message if given. */
export function encodeClose(
  clientId: string,
  lastMessage: Message | undefined,
): Uint8Array {
  begin(CLOSE, 1 + strSize(clientId) + messageSize(lastMessage));
  writeStr(clientId);
  writeMessage(lastMessage);
  return end();
}

/** Reads a batch; every read checks its bounds. */
class Reader {
  readonly #bytes: Uint8Array;
  pos = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  get more(): boolean {
    return this.pos < this.#bytes.length;
  }

  byte(): number {
    const value = this.#bytes[this.pos++];
    if (value === undefined) throw malformed("it ends early");
    return value;
  }

  varint(): number {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = this.byte();
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
    }
    throw malformed("a length is too long");
  }

  /** Skips `n` bytes and returns where they start. */
  skip(n: number): number {
    const start = this.pos;
    if (n > this.#bytes.length - start) throw malformed("it ends early");
    this.pos = start + n;
    return start;
  }

  view(n: number): Uint8Array {
    const start = this.skip(n);
    return this.#bytes.subarray(start, start + n);
  }

  str(): string {
    const n = this.varint();
    const start = this.skip(n);
    const bytes = this.#bytes;
    if (n < 64) {
      let ascii = true;
      for (let i = start; i < start + n; i++) {
        if (bytes[i]! > 0x7f) {
          ascii = false;
          break;
        }
      }
      if (ascii) {
        return String.fromCharCode.apply(
          null,
          bytes.subarray(start, start + n) as unknown as number[],
        );
      }
    }
    return decoder.decode(bytes.subarray(start, start + n));
  }

  strs(): string[] {
    const n = this.varint();
    if (n > this.#bytes.length - this.pos) throw malformed("it ends early");
    const values: string[] = new Array(n);
    for (let i = 0; i < n; i++) values[i] = this.str();
    return values;
  }

  skipStrs(): number {
    const n = this.varint();
    for (let i = 0; i < n; i++) this.skip(this.varint());
    return n;
  }

  message(): Message | undefined {
    const tag = this.byte();
    if (tag === NONE) return undefined;
    if (tag === BINARY) return this.view(this.varint());
    if (tag === TEXT) return this.str();
    throw malformed(`message tag ${tag} is unknown`);
  }

  skipMessage(): void {
    const tag = this.byte();
    if (tag === NONE) return;
    if (tag !== TEXT && tag !== BINARY) {
      throw malformed(`message tag ${tag} is unknown`);
    }
    this.skip(this.varint());
  }
}

function malformed(problem: string): GatewayError {
  return new GatewayError(
    "invalid_argument",
    `Cannot apply packed deliveries: ${problem}`,
  );
}

/**
 * Checks a packed batch as a whole, then applies it to the hub in order.
 * Nothing is applied when it is malformed.
 *
 * @throws {GatewayError} `invalid_argument` when `packed` is malformed.
 */
export function applyPacked(hub: LocalHub, packed: Uint8Array): void {
  check(packed);
  const r = new Reader(packed);
  while (r.more) {
    switch (r.byte()) {
      case ALL: {
        const message = r.message();
        const exclude = r.strs();
        if (message !== undefined) {
          hub.sendToAll(
            message,
            exclude.length === 0 ? undefined : new Set(exclude),
          );
        }
        break;
      }
      case CLIENT: {
        const clientId = r.str();
        const message = r.message();
        if (message !== undefined) hub.sendToClient(clientId, message);
        break;
      }
      case UIDS: {
        const uids = r.strs();
        const message = r.message();
        if (message !== undefined) hub.sendToUids(uids, message);
        break;
      }
      case GROUPS: {
        const groups = r.strs();
        const message = r.message();
        const exclude = r.strs();
        if (message !== undefined) {
          hub.sendToGroups(
            groups,
            message,
            exclude.length === 0 ? undefined : new Set(exclude),
          );
        }
        break;
      }
      case CLOSE: {
        const clientId = r.str();
        hub.close(clientId, r.message());
        break;
      }
    }
  }
}

function check(packed: Uint8Array): void {
  const r = new Reader(packed);
  while (r.more) {
    const kind = r.byte();
    switch (kind) {
      case ALL:
        r.skipMessage();
        r.skipStrs();
        break;
      case CLIENT:
      case CLOSE:
        r.skip(r.varint());
        r.skipMessage();
        break;
      case UIDS:
        r.skipStrs();
        r.skipMessage();
        break;
      case GROUPS:
        r.skipStrs();
        r.skipMessage();
        r.skipStrs();
        break;
      default:
        throw malformed(`delivery kind ${kind} is unknown`);
    }
  }
}
