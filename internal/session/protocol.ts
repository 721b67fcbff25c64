// The frames of the `wsgate.v1` WebSocket subprotocol (docs/protocol.md):
// what a service sends (data frames that carry a sequence number, the
// welcome, the pong) and what it reads from a client (the hello, text data
// behind a `:`, binary data as it is, pings and acks).

import type { Message } from "../../api.ts";

/** The subprotocol's name, as `Sec-WebSocket-Protocol` carries it. */
export const SUBPROTOCOL = "wsgate.v1";

/** The pong a service answers a client's ping with. */
export const PONG_FRAME = '{"type":"pong"}';

/** What a client sends, parsed. */
export type ClientFrame =
  | { readonly kind: "data"; readonly message: Message }
  | {
    readonly kind: "hello";
    /** The token of the session to resume; undefined for a new one. */
    readonly token: string | undefined;
    /** The seq of the last data frame the client received. */
    readonly seq: number;
  }
  | { readonly kind: "ping"; readonly seq: number | undefined }
  | { readonly kind: "ack"; readonly seq: number }
  | { readonly kind: "invalid"; readonly reason: string };

/** What the welcome tells a client. */
export interface Welcome {
  readonly clientId: string;
  readonly token: string;
  readonly recovered: boolean;
  /** The seq after which data frames follow. */
  readonly seq: number;
}

/**
 * Whether an upgrade request offers `wsgate.v1` among its
 * `Sec-WebSocket-Protocol` values.
 */
export function offersSubprotocol(request: Request): boolean {
  const offered = request.headers.get("sec-websocket-protocol");
  if (offered === null) return false;
  for (const name of offered.split(",")) {
    if (name.trim() === SUBPROTOCOL) return true;
  }
  return false;
}

/** The text frame of a data message with `seq`: `<seq>:<payload>`. */
export function encodeText(seq: number, payload: string): string {
  return `${seq}:${payload}`;
}

/**
 * The binary frame of a data message with `seq`: the seq as an unsigned
 * LEB128 varint, then the payload.
 */
export function encodeBinary(seq: number, payload: Uint8Array): Uint8Array {
  const head = varintLength(seq);
  const frame = new Uint8Array(head + payload.byteLength);
  let value = seq;
  let at = 0;
  while (value >= 0x80) {
    frame[at++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  frame[at] = value;
  frame.set(payload, head);
  return frame;
}

/** The data frame of `message` with `seq`, text or binary as it is. */
export function encodeData(seq: number, message: Message): Message {
  return typeof message === "string"
    ? encodeText(seq, message)
    : encodeBinary(seq, message);
}

/** The bytes a varint of `value` takes. */
function varintLength(value: number): number {
  let n = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    n++;
  }
  return n;
}

/**
 * Reads a data frame that {@linkcode encodeData} made: its seq and its
 * payload; undefined when it is not one. For tests and clients in
 * TypeScript.
 */
export function decodeData(
  frame: Message,
): { seq: number; message: Message } | undefined {
  if (typeof frame === "string") {
    const colon = frame.indexOf(":");
    if (colon < 1 || colon > 16) return undefined;
    const digits = frame.slice(0, colon);
    if (!/^[1-9][0-9]*$/.test(digits)) return undefined;
    return { seq: Number(digits), message: frame.slice(colon + 1) };
  }
  let seq = 0;
  let scale = 1;
  for (let at = 0; at < frame.length && at < 8; at++) {
    const byte = frame[at]!;
    seq += (byte & 0x7f) * scale;
    scale *= 0x80;
    if ((byte & 0x80) === 0) {
      return { seq, message: frame.subarray(at + 1) };
    }
  }
  return undefined;
}

/** The welcome frame. */
export function encodeWelcome(welcome: Welcome): string {
  return JSON.stringify({
    type: "welcome",
    clientId: welcome.clientId,
    token: welcome.token,
    recovered: welcome.recovered,
    seq: welcome.seq,
  });
}

/**
 * Parses a frame from a client: `:` and text is text data, `{` and JSON a
 * control frame, bytes are binary data; anything else is invalid (the
 * service closes with 1002).
 */
export function parseClientFrame(message: Message): ClientFrame {
  if (typeof message !== "string") return { kind: "data", message };
  const first = message.charCodeAt(0);
  if (first === 58) return { kind: "data", message: message.slice(1) }; // ":"
  if (first !== 123) { // "{"
    return invalid("a text frame must start with ':' (data) or '{' (control)");
  }
  let value: unknown;
  try {
    value = JSON.parse(message);
  } catch {
    return invalid("a control frame that is not JSON");
  }
  if (typeof value !== "object" || value === null) {
    return invalid("a control frame that is not a JSON object");
  }
  const frame = value as Record<string, unknown>;
  switch (frame.type) {
    case "hello": {
      const { token, seq = 0 } = frame;
      if (token !== undefined && typeof token !== "string") {
        return invalid("a hello whose token is not a string");
      }
      if (!isSeq(seq)) return invalid("a hello whose seq is not an integer");
      return { kind: "hello", token, seq };
    }
    case "ping": {
      const { seq } = frame;
      if (seq !== undefined && !isSeq(seq)) {
        return invalid("a ping whose seq is not an integer");
      }
      return { kind: "ping", seq };
    }
    case "ack": {
      const { seq } = frame;
      if (!isSeq(seq)) return invalid("an ack whose seq is not an integer");
      return { kind: "ack", seq };
    }
    default:
      return invalid("a control frame of an unknown type");
  }
}

/** Whether `value` is a seq: an integer from 0 to 2^53 - 1. */
function isSeq(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) &&
    value >= 0;
}

function invalid(reason: string): ClientFrame {
  return { kind: "invalid", reason };
}

/**
 * Close codes after which a client does not come back: the session ends
 * with the connection. After any other code it is kept for the window.
 */
export function endsSession(code: number): boolean {
  return code === 1000 || code === 1002 || code === 1003 || code === 1007 ||
    code === 1008 || code === 1009 || (code >= 4000 && code <= 4499);
}
