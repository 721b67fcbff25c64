// Batches on a peer's delivery port (port_listener.ts serves it): a plain
// TCP or TLS connection that opens with a hello carrying a node proof (the
// one of the gRPC channel to the same peer, never the secret) and the
// connection's link id (link_id.ts), then carries each batch after its
// length (wire.ts).

import { messageOf } from "../base/describe.ts";
import { GatewayError } from "../../errors.ts";
import { errorOfStatus, fromRpcError } from "../grpc/grpc_status.ts";
import type { BatchSender, BatchSenderEvents } from "./batch_sender.ts";
import { closeQuietly, ConnWriter, ReadBuffer } from "../base/conn_io.ts";
import { formatLinkId, type LinkId } from "./link_id.ts";
import {
  BATCH_HEADROOM,
  BATCH_LENGTH_BYTES,
  HELLO_HEADER_BYTES,
  LINK_VERSION,
  MAGIC,
  PORT_MESSAGE,
  readU32,
  VERSION,
  writeU32,
} from "./wire.ts";

const encoder = new TextEncoder();

/**
 * The hello that opens a connection, with the node proof `token`
 * (`nonce.proof`) if the cluster has a secret; of version 3 with the
 * connection's `link` id, else of version 2.
 */
export function encodeHello(
  token: string | undefined,
  link?: LinkId,
): Uint8Array {
  const bytes = encoder.encode(token ?? "");
  const id = link === undefined
    ? undefined
    : encoder.encode(formatLinkId(link));
  const end = HELLO_HEADER_BYTES + bytes.length;
  const hello = new Uint8Array(end + (id === undefined ? 0 : 1 + id.length));
  hello.set(MAGIC);
  hello[MAGIC.length] = id === undefined ? VERSION : LINK_VERSION;
  hello[MAGIC.length + 1] = bytes.length >>> 8;
  hello[MAGIC.length + 2] = bytes.length & 0xff;
  hello.set(bytes, HELLO_HEADER_BYTES);
  if (id !== undefined) {
    hello[end] = id.length;
    hello.set(id, end + 1);
  }
  return hello;
}

/** One connection to a peer's delivery port, opened at construction. */
export class PortBatchSender implements BatchSender {
  readonly via = "delivery_port";
  readonly #address: string;
  readonly #events: BatchSenderEvents;
  readonly #link: LinkId | undefined;
  #conn: Deno.Conn | undefined;
  #writer: ConnWriter | undefined;
  /** Frames written before the connection opened. */
  #waiting: Uint8Array[] | undefined = [];
  #ended = false;

  /**
   * @param dial Connects to the port.
   * @param token The node proof for the hello (`nonce.proof`), undefined
   * without a secret.
   * @param address The peer's RPC address, for error messages.
   * @param events What the connection reports.
   * @param link The connection's id, for the hello; unset, a hello of
   * version 2 without one.
   */
  constructor(
    dial: () => Promise<Deno.Conn>,
    token: () => Promise<string | undefined>,
    address: string,
    events: BatchSenderEvents,
    link?: LinkId,
  ) {
    this.#address = address;
    this.#events = events;
    this.#link = link;
    this.#open(dial, token).catch((error) =>
      this.#end(
        error instanceof GatewayError ? error : this.#failed(error),
      )
    );
  }

  /** Gets the proof (a failed challenge fails the connection), then dials. */
  async #open(
    dial: () => Promise<Deno.Conn>,
    token: () => Promise<string | undefined>,
  ): Promise<void> {
    let hello: string | undefined;
    try {
      hello = await token();
    } catch (error) {
      throw fromRpcError(error, this.#address);
    }
    if (this.#ended) return;
    this.#attach(await dial(), hello);
  }

  write(buffer: Uint8Array, bytes: number): void {
    if (this.#ended) return;
    const start = BATCH_HEADROOM - BATCH_LENGTH_BYTES;
    writeU32(buffer, start, bytes);
    const frame = buffer.slice(start, BATCH_HEADROOM + bytes);
    if (this.#writer !== undefined) this.#writer.write(frame);
    else this.#waiting?.push(frame);
  }

  abort(reason: GatewayError): void {
    this.#end(reason);
  }

  finish(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#waiting = undefined;
    const conn = this.#conn;
    if (conn !== undefined) {
      this.#writer?.flushed().then(() => closeQuietly(conn));
    }
  }

  #attach(conn: Deno.Conn, token: string | undefined): void {
    if (this.#ended) {
      closeQuietly(conn);
      return;
    }
    this.#conn = conn;
    const writer = this.#writer = new ConnWriter(conn);
    writer.write(encodeHello(token, this.#link));
    for (const frame of this.#waiting ?? []) writer.write(frame);
    this.#waiting = undefined;
    this.#read(conn).then(
      (error) => this.#end(error),
      (error) => this.#end(this.#failed(error)),
    );
  }

  /** Reads until the connection ends; resolves with why it ended. */
  async #read(conn: Deno.Conn): Promise<GatewayError> {
    const input = new ReadBuffer();
    const need = async (n: number) => {
      while (input.size < n) {
        if (!await input.fill(conn, n)) return false;
      }
      return true;
    };
    while (await need(1)) {
      const type = input.view()[0];
      if (type === PORT_MESSAGE.READY) {
        input.consume(1);
        this.#events.onReady();
      } else if (type === PORT_MESSAGE.ACK) {
        if (!await need(5)) break;
        const batches = readU32(input.view(), 1);
        input.consume(5);
        this.#events.onAcknowledged(batches);
      } else if (type === PORT_MESSAGE.ERROR) {
        if (!await need(4)) break;
        const header = input.view();
        const code = header[1]!;
        const length = header[2]! << 8 | header[3]!;
        if (!await need(4 + length)) break;
        const message = new TextDecoder().decode(
          input.view().subarray(4, 4 + length),
        );
        return errorOfStatus(code, message, this.#address);
      } else {
        return new GatewayError(
          "internal",
          `${this.#address}: the delivery port sent an unknown message type ${type}`,
        );
      }
    }
    return new GatewayError(
      "unavailable",
      `${this.#address}: the delivery connection closed`,
    );
  }

  #failed(error: unknown): GatewayError {
    return new GatewayError(
      "unavailable",
      `${this.#address}: the delivery connection failed: ${messageOf(error)}`,
      { cause: error },
    );
  }

  #end(reason: GatewayError): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#waiting = undefined;
    if (this.#conn !== undefined) closeQuietly(this.#conn);
    this.#events.onEnded(reason);
  }
}
