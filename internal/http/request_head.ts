// The head of an HTTP/1.1 request (request line and headers), parsed
// strictly: what a service's port accepts from the internet. Anything
// ambiguous (a bare LF, a folded header, a space before a colon, two
// lengths, a length beside chunked encoding) is refused, because a proxy in
// front of the service may read it otherwise.

/** The most bytes a request head may take, request line included. */
export const MAX_HEAD_BYTES = 16 * 1024;
/** The most header lines a request may have. */
export const MAX_HEADERS = 100;

/** A parsed request head. */
export interface RequestHead {
  readonly method: string;
  /** The request target as sent: `/path?query` (or `*`, or absolute). */
  readonly target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  readonly minor: number;
  /** Header names in lower case, with their values; repeats joined by ", ". */
  readonly headers: [name: string, value: string][];
}

/** Why a head was refused: the status to answer, and why. */
export class BadRequest extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = "BadRequest";
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const decoder = new TextDecoder("latin1");

/**
 * Where the head ends in `bytes` (the index after its blank line), or -1
 * when it is not complete yet.
 *
 * @throws {BadRequest} 431 when no head end is within MAX_HEAD_BYTES.
 */
export function headEnd(bytes: Uint8Array, from = 0): number {
  for (let i = Math.max(3, from); i < bytes.length; i++) {
    if (
      bytes[i] === 10 && bytes[i - 1] === 13 && bytes[i - 2] === 10 &&
      bytes[i - 3] === 13
    ) return i + 1;
  }
  if (bytes.length > MAX_HEAD_BYTES) {
    throw new BadRequest(431, "the request head is larger than 16 KiB");
  }
  return -1;
}

/**
 * Parses a complete head (up to and including its blank line).
 *
 * @throws {BadRequest} for anything but a well-formed HTTP/1.x head.
 */
export function parseRequestHead(bytes: Uint8Array): RequestHead {
  if (bytes.length > MAX_HEAD_BYTES) {
    throw new BadRequest(431, "the request head is larger than 16 KiB");
  }
  const text = decoder.decode(bytes);
  const lines = text.split("\r\n");
  // The head ends with an empty line: the last two pieces are empty.
  lines.length -= 2;
  const requestLine = lines[0] ?? "";
  const parts = requestLine.split(" ");
  if (parts.length !== 3) {
    throw new BadRequest(400, "the request line is not METHOD TARGET VERSION");
  }
  const [method, target, version] = parts as [string, string, string];
  if (!TOKEN.test(method)) {
    throw new BadRequest(400, "the method is not a token");
  }
  // deno-lint-ignore no-control-regex
  if (target === "" || /[\x00-\x20\x7f]/.test(target)) {
    throw new BadRequest(400, "the request target is empty or has spaces");
  }
  const match = /^HTTP\/1\.([01])$/.exec(version);
  if (match === null) {
    throw new BadRequest(505, `${version.slice(0, 16)} is not HTTP/1.0 or 1.1`);
  }
  if (lines.length - 1 > MAX_HEADERS) {
    throw new BadRequest(431, `more than ${MAX_HEADERS} header lines`);
  }
  const headers = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new BadRequest(400, "a header line has no name");
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) {
      throw new BadRequest(400, "a header name is not a token (or folded)");
    }
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    // deno-lint-ignore no-control-regex
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) {
      throw new BadRequest(400, "a header value has control characters");
    }
    const key = name.toLowerCase();
    const seen = headers.get(key);
    headers.set(key, seen === undefined ? value : `${seen}, ${value}`);
  }
  return { method, target, minor: Number(match[1]), headers: [...headers] };
}

/** How a request's body is framed, from its head. */
export type BodyFraming =
  | { readonly kind: "none" }
  | { readonly kind: "length"; readonly length: number }
  | { readonly kind: "chunked" };

/**
 * The framing of a request's body.
 *
 * @throws {BadRequest} for a length beside chunked encoding, two different
 * lengths, or a transfer coding other than chunked.
 */
export function bodyFraming(headers: Headers): BodyFraming {
  const coding = headers.get("transfer-encoding");
  const length = headers.get("content-length");
  if (coding !== null) {
    if (length !== null) {
      throw new BadRequest(400, "both Content-Length and Transfer-Encoding");
    }
    if (coding.trim().toLowerCase() !== "chunked") {
      throw new BadRequest(
        501,
        "only the chunked transfer coding is supported",
      );
    }
    return { kind: "chunked" };
  }
  if (length === null) return { kind: "none" };
  const values = new Set(length.split(",").map((v) => v.trim()));
  if (values.size !== 1) throw new BadRequest(400, "two different lengths");
  const value = [...values][0]!;
  if (!/^\d{1,15}$/.test(value)) {
    throw new BadRequest(400, "Content-Length is not a number");
  }
  const n = Number(value);
  return n === 0 ? { kind: "none" } : { kind: "length", length: n };
}
