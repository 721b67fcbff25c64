// The client side of a delivery port connection (delivery_port.ts): writes
// batches, reads READY, ACK and ERROR.

import { Code, ConnectError } from "@connectrpc/connect";
import type { GatewayError } from "../../errors.ts";
import { closeQuietly, ConnWriter } from "./conn_io.ts";
import { DELIVER_HEADROOM } from "./grpc_sender.ts";
import {
  ACK,
  BATCH_HEADER_BYTES,
  encodeHello,
  ERROR,
  ReadBuffer,
  readU32,
  READY,
  writeU32,
} from "./port_wire.ts";
import { fromRpcError } from "../grpc/grpc_status.ts";

/** What a {@linkcode DeliveryPortCall} reports. */
export interface DeliveryPortCallEvents {
  /** The service accepted the connection: batches can go this way. */
  onReady(): void;
  /** The peer applied `batches` more batches, in the order written. */
  onAcknowledged(batches: number): void;
  /** The connection ended; batches not acknowledged by then are lost. */
  onEnded(error: GatewayError): void;
}

/** One connection to a peer's delivery port, opened at construction. */
export class DeliveryPortCall {
  readonly #address: string;
  readonly #events: DeliveryPortCallEvents;
  #conn: Deno.Conn | undefined;
  #writer: ConnWriter | undefined;
  /** Frames written before the connection opened. */
  #waiting: Uint8Array[] | undefined = [];
  #ended = false;

  constructor(
    dial: () => Promise<Deno.Conn>,
    secret: string | undefined,
    address: string,
    events: DeliveryPortCallEvents,
  ) {
    this.#address = address;
    this.#events = events;
    dial().then(
      (conn) => this.#attach(conn, secret),
      (error) => this.#end(unavailable(error)),
    );
  }

  /**
   * Writes one batch. `buffer` holds it from {@linkcode DELIVER_HEADROOM}
   * on, `bytes` long; the headroom is overwritten, and the frame copied out.
   */
  write(buffer: Uint8Array, bytes: number): void {
    if (this.#ended) return;
    const start = DELIVER_HEADROOM - BATCH_HEADER_BYTES;
    writeU32(buffer, start, bytes);
    const frame = buffer.slice(start, DELIVER_HEADROOM + bytes);
    if (this.#writer !== undefined) this.#writer.write(frame);
    else this.#waiting?.push(frame);
  }

  /** Ends the connection at once, with `reason` reported to `onEnded`. */
  abort(reason: ConnectError): void {
    this.#end(reason);
  }

  #attach(conn: Deno.Conn, secret: string | undefined): void {
    if (this.#ended) {
      closeQuietly(conn);
      return;
    }
    this.#conn = conn;
    const writer = this.#writer = new ConnWriter(conn);
    writer.write(encodeHello(secret));
    for (const frame of this.#waiting ?? []) writer.write(frame);
    this.#waiting = undefined;
    this.#read(conn).then(
      (error) => this.#end(error),
      (error) => this.#end(unavailable(error)),
    );
  }

  /** Reads until the connection ends; resolves with why it ended. */
  async #read(conn: Deno.Conn): Promise<ConnectError> {
    const input = new ReadBuffer();
    const need = async (n: number) => {
      while (input.size < n) {
        if (!await input.fill(conn, n)) return false;
      }
      return true;
    };
    while (await need(1)) {
      const type = input.view()[0];
      if (type === READY) {
        input.consume(1);
        this.#events.onReady();
      } else if (type === ACK) {
        if (!await need(5)) break;
        const batches = readU32(input.view(), 1);
        input.consume(5);
        this.#events.onAcknowledged(batches);
      } else if (type === ERROR) {
        if (!await need(4)) break;
        const header = input.view();
        const code = header[1]!;
        const length = header[2]! << 8 | header[3]!;
        if (!await need(4 + length)) break;
        const message = new TextDecoder().decode(
          input.view().subarray(4, 4 + length),
        );
        return new ConnectError(
          message,
          code > 0 && code <= 16 ? code : Code.Unknown,
        );
      } else {
        return new ConnectError(
          `the delivery port sent an unknown message type ${type}`,
          Code.Internal,
        );
      }
    }
    return new ConnectError("the delivery connection closed", Code.Unavailable);
  }

  #end(reason: ConnectError): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#waiting = undefined;
    if (this.#conn !== undefined) closeQuietly(this.#conn);
    this.#events.onEnded(fromRpcError(reason, this.#address));
  }
}

function unavailable(error: unknown): ConnectError {
  return new ConnectError(
    `the delivery connection failed: ${
      error instanceof Error ? error.message : String(error)
    }`,
    Code.Unavailable,
  );
}
