// Packed deliveries (wire.ts): the one encoder and the one decoder.
//
// A delivery is encoded once, whatever the number of peers it goes to, and
// copied into each peer's batch; a batch is the concatenation of its
// deliveries. The receiver checks a whole batch before it applies any of
// it, and applies it without making an object per delivery: binary
// payloads are views into the received bytes, and one payload reaches
// every recipient as the same string or Uint8Array.

import type { Message } from "../../api.ts";
import { GatewayError } from "../../errors.ts";
import { maxMessageBytes } from "../api/message_size.ts";
import {
  HOLDING,
  type Holding,
  KIND,
  MAX_VARINT_BYTES,
  MESSAGE,
  varintSize,
} from "./wire.ts";
import { deliveryOrigin } from "./origin.ts";

/**
 * What a batch is applied to: the clients of this service (LocalHub has
 * this shape).
 */
export interface DeliveryTarget {
  toAll(message: Message, exclude?: ReadonlySet<string>): void;
  toClient(clientId: string, message: Message): void;
  toUids(uids: readonly string[], message: Message): void;
  toGroups(
    groups: readonly string[],
    message: Message,
    exclude?: ReadonlySet<string>,
  ): void;
  close(clientId: string, lastMessage?: Message): void;
  /**
   * A sender's fence in the takeover of session `clientId` by
   * `newClientId` (wire.ts KIND.FENCE); `origin` is the sender's node id.
   * Targets that take no part in takeovers leave it out.
   */
  fence?(origin: string, clientId: string, newClientId: string): void;
}

/**
 * Where the holder announcements of one connection go
 * (internal/cluster/holder_index.ts makes one per connection). HOLD and
 * RELEASE belong to the sender that the connection's last HOLD_RESET
 * named.
 */
export interface HoldingsStream {
  /** The sender `nodeId` starts its holdings over, numbered `epoch`. */
  reset(nodeId: string, epoch: number): void;
  /** The sender holds members of `names` now. */
  hold(holding: Holding, names: readonly string[]): void;
  /** The sender holds no member of `names` any more. */
  release(holding: Holding, names: readonly string[]): void;
  /** The snapshot that the last reset began is complete. */
  synced(): void;
  /** The connection ended. */
  end(): void;
}

const encoder = new TextEncoder();
// Like protobuf strings: bytes that are not UTF-8 decode to U+FFFD.
const decoder = new TextDecoder();

/** A scratch buffer that grew past this is dropped after its delivery. */
const MAX_KEPT_SCRATCH = 1 << 20;
const INITIAL_SCRATCH = 4096;

/**
 * Encodes deliveries, each into this encoder's scratch buffer: an encoded
 * delivery is a view of it, valid until the next encode, so callers copy
 * it at once (DeliveryLink.send does). One encoder per service.
 */
export class DeliveryEncoder {
  #scratch = new Uint8Array(INITIAL_SCRATCH);
  #pos = 0;

  /** A delivery to every client, minus `exclude`. */
  toAll(message: Message, exclude: readonly string[]): Uint8Array {
    this.#begin(KIND.ALL, messageSize(message) + strsSize(exclude));
    this.#message(message);
    this.#strs(exclude);
    return this.#end();
  }

  /** A delivery to one client. */
  toClient(clientId: string, message: Message): Uint8Array {
    this.#begin(KIND.CLIENT, strSize(clientId) + messageSize(message));
    this.#str(clientId);
    this.#message(message);
    return this.#end();
  }

  /** A delivery to the clients of some uids. */
  toUids(uids: readonly string[], message: Message): Uint8Array {
    this.#begin(KIND.UIDS, strsSize(uids) + messageSize(message));
    this.#strs(uids);
    this.#message(message);
    return this.#end();
  }

  /** A delivery to the clients of some groups, minus `exclude`. */
  toGroups(
    groups: readonly string[],
    message: Message,
    exclude: readonly string[],
  ): Uint8Array {
    this.#begin(
      KIND.GROUPS,
      strsSize(groups) + messageSize(message) + strsSize(exclude),
    );
    this.#strs(groups);
    this.#message(message);
    this.#strs(exclude);
    return this.#end();
  }

  /** Closes a client, after a last message if given. */
  close(clientId: string, lastMessage: Message | undefined): Uint8Array {
    this.#begin(KIND.CLOSE, strSize(clientId) + messageSize(lastMessage));
    this.#str(clientId);
    this.#message(lastMessage);
    return this.#end();
  }

  /**
   * A fence of sender `origin` in the takeover of session `clientId` by
   * `newClientId`; with both ids empty, only the sender's name.
   */
  fence(origin: string, clientId: string, newClientId: string): Uint8Array {
    this.#begin(
      KIND.FENCE,
      strSize(origin) + strSize(clientId) + strSize(newClientId),
    );
    this.#str(origin);
    this.#str(clientId);
    this.#str(newClientId);
    return this.#end();
  }

  /** The sender's holdings start over: `nodeId`'s, numbered `epoch`. */
  holdReset(nodeId: string, epoch: number): Uint8Array {
    this.#begin(KIND.HOLD_RESET, strSize(nodeId) + MAX_VARINT_BYTES);
    this.#str(nodeId);
    this.#varint(epoch);
    return this.#end();
  }

  /** The sender now holds members of `names` (uids or groups). */
  hold(holding: Holding, names: readonly string[]): Uint8Array {
    return this.#holding(KIND.HOLD, holding, names);
  }

  /** The sender holds no member of `names` any more. */
  release(holding: Holding, names: readonly string[]): Uint8Array {
    return this.#holding(KIND.RELEASE, holding, names);
  }

  /** The snapshot that the last holdReset began is complete. */
  holdSynced(): Uint8Array {
    this.#begin(KIND.HOLD_SYNCED, 0);
    return this.#end();
  }

  #holding(kind: number, holding: Holding, names: readonly string[]) {
    this.#begin(kind, 1 + strsSize(names));
    this.#scratch[this.#pos++] = holding;
    this.#strs(names);
    return this.#end();
  }

  /** Starts a delivery of `kind` whose fields take at most `size` bytes. */
  #begin(kind: number, size: number): void {
    if (1 + size > this.#scratch.length) {
      this.#scratch = new Uint8Array(
        Math.max(1 + size, 2 * this.#scratch.length),
      );
    }
    this.#scratch[0] = kind;
    this.#pos = 1;
  }

  #end(): Uint8Array {
    const view = this.#scratch.subarray(0, this.#pos);
    if (this.#scratch.length > MAX_KEPT_SCRATCH) {
      this.#scratch = new Uint8Array(INITIAL_SCRATCH);
    }
    return view;
  }

  #varint(value: number): void {
    const scratch = this.#scratch;
    let pos = this.#pos;
    while (value > 0x7f) {
      scratch[pos++] = (value & 0x7f) | 0x80;
      value >>>= 7;
    }
    scratch[pos++] = value;
    this.#pos = pos;
  }

  #str(value: string): void {
    const n = value.length;
    if (n < 128) {
      // Short strings (clientIds, most uids and groups): one length byte
      // when they are ASCII, which is checked while copying.
      const scratch = this.#scratch;
      let at = this.#pos + 1;
      let i = 0;
      for (; i < n; i++) {
        const c = value.charCodeAt(i);
        if (c > 0x7f) break;
        scratch[at++] = c;
      }
      if (i === n) {
        scratch[this.#pos] = n;
        this.#pos = at;
        return;
      }
    }
    this.#utf8(value);
  }

  #utf8(value: string): void {
    const head = varintSize(value.length * 3);
    const start = this.#pos + head;
    const { written } = encoder.encodeInto(
      value,
      this.#scratch.subarray(start, start + value.length * 3),
    );
    const realHead = varintSize(written);
    if (realHead !== head) {
      this.#scratch.copyWithin(this.#pos + realHead, start, start + written);
    }
    this.#varint(written);
    this.#pos += written;
  }

  #strs(values: readonly string[]): void {
    this.#varint(values.length);
    for (const value of values) this.#str(value);
  }

  #message(message: Message | undefined): void {
    if (message === undefined) {
      this.#scratch[this.#pos++] = MESSAGE.NONE;
    } else if (typeof message === "string") {
      this.#scratch[this.#pos++] = MESSAGE.TEXT;
      this.#utf8(message);
    } else {
      this.#scratch[this.#pos++] = MESSAGE.BINARY;
      this.#varint(message.byteLength);
      this.#scratch.set(message, this.#pos);
      this.#pos += message.byteLength;
    }
  }
}

/** The most bytes a string takes: its length and UTF-8. */
function strSize(value: string): number {
  return MAX_VARINT_BYTES + value.length * 3;
}

function strsSize(values: readonly string[]): number {
  let size = MAX_VARINT_BYTES;
  for (const value of values) size += strSize(value);
  return size;
}

/** The most bytes a message takes: its tag, length and body. */
function messageSize(message: Message | undefined): number {
  if (message === undefined) return 1;
  return 1 + MAX_VARINT_BYTES + maxMessageBytes(message);
}

/**
 * Checks a batch of packed deliveries as a whole, then applies it to
 * `target`, in order, and holder announcements to `holdings` (skipped
 * without). Nothing is applied when it is malformed. Returns how many
 * deliveries of messages it applied (holder announcements not counted).
 *
 * @throws {GatewayError} `invalid_argument` when `packed` is malformed.
 */
export function applyBatch(
  target: DeliveryTarget,
  packed: Uint8Array,
  holdings?: HoldingsStream,
): number {
  checkBatch(packed);
  const r = new Reader(packed);
  let holderKinds = 0;
  let all = 0;
  while (r.more) {
    all++;
    switch (r.byte()) {
      case KIND.ALL: {
        const message = r.message();
        const exclude = r.strs();
        if (message !== undefined) {
          target.toAll(
            message,
            exclude.length === 0 ? undefined : new Set(exclude),
          );
        }
        break;
      }
      case KIND.CLIENT: {
        const clientId = r.str();
        const message = r.message();
        if (message !== undefined) target.toClient(clientId, message);
        break;
      }
      case KIND.UIDS: {
        const uids = r.strs();
        const message = r.message();
        if (message !== undefined) target.toUids(uids, message);
        break;
      }
      case KIND.GROUPS: {
        const groups = r.strs();
        const message = r.message();
        const exclude = r.strs();
        if (message !== undefined) {
          target.toGroups(
            groups,
            message,
            exclude.length === 0 ? undefined : new Set(exclude),
          );
        }
        break;
      }
      case KIND.CLOSE: {
        const clientId = r.str();
        target.close(clientId, r.message());
        break;
      }
      case KIND.FENCE: {
        holderKinds++; // not a message
        const origin = r.str();
        const clientId = r.str();
        const newClientId = r.str();
        // What follows on this connection comes from `origin`.
        deliveryOrigin.current = origin;
        if (clientId !== "") target.fence?.(origin, clientId, newClientId);
        break;
      }
      case KIND.HOLD_RESET: {
        holderKinds++;
        const nodeId = r.str();
        const epoch = r.varint();
        // What follows on this connection comes from `nodeId` (origin.ts).
        deliveryOrigin.current = nodeId;
        holdings?.reset(nodeId, epoch);
        break;
      }
      case KIND.HOLD:
      case KIND.RELEASE: {
        holderKinds++;
        const kind = r.previous();
        const holding = r.byte() as Holding;
        const names = r.strs();
        if (kind === KIND.HOLD) holdings?.hold(holding, names);
        else holdings?.release(holding, names);
        break;
      }
      case KIND.HOLD_SYNCED:
        holderKinds++;
        holdings?.synced();
        break;
    }
  }
  return all - holderKinds;
}

/** Walks a batch without decoding it; throws where it is malformed. */
function checkBatch(packed: Uint8Array): void {
  const r = new Reader(packed);
  while (r.more) {
    const kind = r.byte();
    switch (kind) {
      case KIND.ALL:
        r.skipMessage();
        r.skipStrs();
        break;
      case KIND.CLIENT:
      case KIND.CLOSE:
        r.skip(r.varint());
        r.skipMessage();
        break;
      case KIND.UIDS:
        r.skipStrs();
        r.skipMessage();
        break;
      case KIND.GROUPS:
        r.skipStrs();
        r.skipMessage();
        r.skipStrs();
        break;
      case KIND.FENCE:
        for (let i = 0; i < 3; i++) r.skip(r.varint());
        break;
      case KIND.HOLD_RESET:
        r.skip(r.varint());
        r.varint();
        break;
      case KIND.HOLD:
      case KIND.RELEASE: {
        const holding = r.byte();
        if (holding !== HOLDING.UID && holding !== HOLDING.GROUP) {
          throw malformed(`holding ${holding} is unknown`);
        }
        r.skipStrs();
        break;
      }
      case KIND.HOLD_SYNCED:
        break;
      default:
        throw malformed(`delivery kind ${kind} is unknown`);
    }
  }
}

/** Reads a batch; every read checks its bounds. */
class Reader {
  readonly #bytes: Uint8Array;
  #pos = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  get more(): boolean {
    return this.#pos < this.#bytes.length;
  }

  byte(): number {
    const value = this.#bytes[this.#pos++];
    if (value === undefined) throw malformed("it ends early");
    return value;
  }

  /** The byte before the current position. */
  previous(): number {
    return this.#bytes[this.#pos - 1]!;
  }

  varint(): number {
    let value = 0;
    for (let shift = 0; shift < 7 * MAX_VARINT_BYTES; shift += 7) {
      const b = this.byte();
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
    }
    throw malformed("a length is too long");
  }

  /** Skips `n` bytes and returns where they start. */
  skip(n: number): number {
    const start = this.#pos;
    if (n > this.#bytes.length - start) throw malformed("it ends early");
    this.#pos = start + n;
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
    if (n > this.#bytes.length - this.#pos) throw malformed("it ends early");
    const values: string[] = new Array(n);
    for (let i = 0; i < n; i++) values[i] = this.str();
    return values;
  }

  skipStrs(): void {
    const n = this.varint();
    for (let i = 0; i < n; i++) this.skip(this.varint());
  }

  message(): Message | undefined {
    const tag = this.byte();
    if (tag === MESSAGE.NONE) return undefined;
    if (tag === MESSAGE.BINARY) return this.view(this.varint());
    if (tag === MESSAGE.TEXT) return this.str();
    throw malformed(`message tag ${tag} is unknown`);
  }

  skipMessage(): void {
    const tag = this.byte();
    if (tag === MESSAGE.NONE) return;
    if (tag !== MESSAGE.TEXT && tag !== MESSAGE.BINARY) {
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
