// The client side of one Deliver stream, with gRPC framing by hand (see
// deliver_endpoint.ts for why): writes batches as DeliverRequest{packed},
// reads DeliverResponse acknowledgements, and reports how the call ended.

import * as http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import type { GatewayError } from "../../errors.ts";
import { BATCHES_TAG, DELIVER_PATH } from "./grpc_endpoint.ts";
import { PACKED_TAG } from "./deliver_request.ts";
import { DELIVERY_PORT_HEADER } from "./port_wire.ts";
import {
  FRAME_HEADER_BYTES,
  GrpcFrameReader,
  readVarint,
  statusError,
  varintSize,
  writeFrameHeader,
  writeVarint,
} from "../grpc/grpc_frame.ts";
import { fromRpcError } from "../grpc/grpc_status.ts";

/** What a {@linkcode DeliverCall} reports. */
export interface DeliverCallEvents {
  /** The peer applied `batches` more batches, in the order written. */
  onAcknowledged(batches: number): void;
  /** The call ended; batches not acknowledged by then are lost. */
  onEnded(error: GatewayError): void;
  /** The peer has a delivery port (delivery_port.ts), this one. */
  onDeliveryPort(port: number): void;
}

/** DeliverResponses are a few bytes; anything longer is an error. */
const MAX_RESPONSE_BYTES = 64;

/** Room before a batch for its frame header, tag and length. */
export const DELIVER_HEADROOM = FRAME_HEADER_BYTES + 1 + 5;

/** One Deliver call to a peer, opened at construction. */
export class DeliverCall {
  readonly #address: string;
  readonly #events: DeliverCallEvents;
  #stream: http2.ClientHttp2Stream | undefined;
  /** Frames written before the stream opened. */
  #waiting: Uint8Array[] | undefined = [];
  #ended = false;

  constructor(
    open: (path: string) => Promise<http2.ClientHttp2Stream>,
    address: string,
    events: DeliverCallEvents,
  ) {
    this.#address = address;
    this.#events = events;
    open(DELIVER_PATH).then(
      (stream) => this.#attach(stream),
      (error) => this.#end(error),
    );
  }

  /**
   * Writes one batch. `buffer` holds it from {@linkcode DELIVER_HEADROOM}
   * on, `bytes` long; the headroom is overwritten, and the frame copied out.
   */
  write(buffer: Uint8Array, bytes: number): void {
    if (this.#ended) return;
    // DeliverRequest { bytes packed = 2 }, its frame header before it.
    const lengthBytes = varintSize(bytes);
    const start = DELIVER_HEADROOM - 1 - lengthBytes - FRAME_HEADER_BYTES;
    buffer[start + FRAME_HEADER_BYTES] = PACKED_TAG;
    writeVarint(buffer, start + FRAME_HEADER_BYTES + 1, bytes);
    writeFrameHeader(buffer, start, 1 + lengthBytes + bytes);
    const frame = buffer.slice(start, DELIVER_HEADROOM + bytes);
    if (this.#stream !== undefined) this.#stream.write(frame);
    else this.#waiting?.push(frame);
  }

  /** Ends the call at once, with `reason` reported to `onEnded`. */
  abort(reason: ConnectError): void {
    this.#end(reason);
  }

  /**
   * Ends the request stream: the peer answers what it got, then ends the
   * call. Nothing is reported any more.
   */
  finish(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#waiting = undefined;
    this.#stream?.end();
  }

  #attach(stream: http2.ClientHttp2Stream): void {
    if (this.#ended) {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      return;
    }
    this.#stream = stream;
    const reader = new GrpcFrameReader(MAX_RESPONSE_BYTES);
    let status: ConnectError | undefined;
    let failure: unknown;
    stream.once("response", (headers) => {
      const code = headers[":status"];
      if (code !== 200) {
        failure = new ConnectError(
          `the peer answered with HTTP status ${code}`,
          Code.Unavailable,
        );
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }
      // A refused call may end with its status in the headers.
      status = statusError(headers);
      const port = Number(headers[DELIVERY_PORT_HEADER]);
      if (
        !this.#ended && Number.isInteger(port) && port > 0 && port < 65536
      ) {
        this.#events.onDeliveryPort(port);
      }
    });
    stream.on("data", (chunk: Uint8Array) => {
      if (this.#ended) return;
      try {
        reader.push(chunk, (message) => {
          this.#events.onAcknowledged(readBatches(message));
        });
      } catch (error) {
        failure = error;
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }
    });
    stream.once("trailers", (trailers) => status = statusError(trailers));
    stream.on("error", (error) => failure ??= error);
    stream.once("close", () =>
      this.#end(
        status ?? failure ??
          new ConnectError("the delivery stream ended", Code.Unavailable),
      ));
    const waiting = this.#waiting ?? [];
    this.#waiting = undefined;
    for (const frame of waiting) stream.write(frame);
  }

  #end(reason: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#waiting = undefined;
    const stream = this.#stream;
    if (stream !== undefined && !stream.closed) {
      stream.close(http2.constants.NGHTTP2_CANCEL);
    }
    this.#events.onEnded(fromRpcError(reason, this.#address));
  }
}

/** DeliverResponse.batches (field 1, a varint); 0 when absent. */
function readBatches(message: Uint8Array): number {
  let batches = 0;
  let at = 0;
  while (at < message.length) {
    const tag = message[at++]!;
    const field = readVarint(message, at);
    if (field === undefined) {
      throw new ConnectError("a malformed DeliverResponse", Code.Internal);
    }
    if (tag !== BATCHES_TAG) {
      throw new ConnectError("an unexpected DeliverResponse", Code.Internal);
    }
    batches = field.value;
    at = field.end;
  }
  return batches;
}
