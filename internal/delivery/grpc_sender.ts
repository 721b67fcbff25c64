// Batches on the gRPC Deliver stream, the way every link starts: one call
// to the peer's GatewayService.Deliver, framed by hand on node:http2 (the
// peer's grpc_endpoint.ts serves it), named by its link id (LINK_HEADER,
// link_id.ts). Each batch goes out as a DeliverRequest { packed }, and
// DeliverResponse { batches } messages come back.

import * as http2 from "node:http2";
import { GatewayError } from "../../errors.ts";
import {
  GRPC_FRAME_HEADER_BYTES,
  GrpcFrameReader,
  statusError,
  writeFrameHeader,
} from "../grpc/grpc_frame.ts";
import { fromRpcError } from "../grpc/grpc_status.ts";
import type { BatchSender, BatchSenderEvents } from "./batch_sender.ts";
import { formatLinkId, type LinkId } from "./link_id.ts";
import {
  BATCH_HEADROOM,
  BATCHES_TAG,
  DELIVER_PATH,
  DELIVERY_PORT_HEADER,
  HOLDINGS_HEADER,
  LINK_HEADER,
  PACKED_TAG,
  readVarint,
  varintSize,
  writeVarint,
} from "./wire.ts";

/** DeliverResponses are a few bytes; anything longer is an error. */
const MAX_RESPONSE_BYTES = 64;

/**
 * Opens a plain gRPC call on the connection to the peer, with `headers`
 * besides those of every call.
 */
export type OpenCall = (
  path: string,
  headers?: Readonly<Record<string, string>>,
) => Promise<http2.ClientHttp2Stream>;

/** One Deliver call to a peer, opened at construction. */
export class GrpcBatchSender implements BatchSender {
  readonly via = "grpc";
  readonly #address: string;
  readonly #events: BatchSenderEvents;
  #stream: http2.ClientHttp2Stream | undefined;
  /** Frames written before the stream opened. */
  #waiting: Uint8Array[] | undefined = [];
  #ended = false;

  /**
   * @param open Opens the call on the connection to the peer.
   * @param address The peer's RPC address, for error messages.
   * @param events What the call reports.
   * @param link The connection's id (LINK_HEADER); unset, none is sent.
   */
  constructor(
    open: OpenCall,
    address: string,
    events: BatchSenderEvents,
    link?: LinkId,
  ) {
    this.#address = address;
    this.#events = events;
    const headers = link === undefined
      ? undefined
      : { [LINK_HEADER]: formatLinkId(link) };
    open(DELIVER_PATH, headers).then(
      (stream) => this.#attach(stream),
      (error) => this.#end(fromRpcError(error, address)),
    );
  }

  write(buffer: Uint8Array, bytes: number): void {
    if (this.#ended) return;
    // DeliverRequest { bytes packed = 2 }, its frame header before it.
    const lengthBytes = varintSize(bytes);
    const start = BATCH_HEADROOM - 1 - lengthBytes - GRPC_FRAME_HEADER_BYTES;
    buffer[start + GRPC_FRAME_HEADER_BYTES] = PACKED_TAG;
    writeVarint(buffer, start + GRPC_FRAME_HEADER_BYTES + 1, bytes);
    writeFrameHeader(buffer, start, 1 + lengthBytes + bytes);
    const frame = buffer.slice(start, BATCH_HEADROOM + bytes);
    if (this.#stream !== undefined) this.#stream.write(frame);
    else this.#waiting?.push(frame);
  }

  abort(reason: GatewayError): void {
    this.#end(reason);
  }

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
    const address = this.#address;
    const reader = new GrpcFrameReader(MAX_RESPONSE_BYTES);
    let status: GatewayError | undefined;
    let failure: GatewayError | undefined;
    stream.once("response", (headers) => {
      const code = headers[":status"];
      if (code !== 200) {
        failure = new GatewayError(
          "unavailable",
          `${address}: the peer answered with HTTP status ${code}`,
        );
        stream.close(http2.constants.NGHTTP2_CANCEL);
        return;
      }
      // A refused call ends with its status in the headers.
      status = statusError(headers, address);
      if (status !== undefined) return this.#end(status);
      if (this.#ended) return;
      if (headers[HOLDINGS_HEADER] === "1") this.#events.onHoldings?.();
      if (this.#ended) return;
      this.#events.onReady();
      if (this.#ended) return;
      const port = Number(headers[DELIVERY_PORT_HEADER]);
      if (Number.isInteger(port) && port > 0 && port < 65536) {
        this.#events.onDeliveryPort(port);
      }
    });
    stream.on("data", (chunk: Uint8Array) => {
      if (this.#ended) return;
      try {
        reader.push(chunk, (message) => {
          this.#events.onAcknowledged(readBatches(message, address));
        });
      } catch (error) {
        failure = fromRpcError(error, address);
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }
    });
    // The peer ended the call: what it applied is acknowledged already.
    stream.once("trailers", (trailers) => {
      status = statusError(trailers, address);
      this.#end(
        status ??
          new GatewayError(
            "unavailable",
            `${address}: the peer ended the delivery stream`,
          ),
      );
    });
    stream.on("error", (error) => failure ??= fromRpcError(error, address));
    stream.once("close", () =>
      this.#end(
        status ?? failure ??
          new GatewayError(
            "unavailable",
            `${address}: the delivery stream ended`,
          ),
      ));
    const waiting = this.#waiting ?? [];
    this.#waiting = undefined;
    for (const frame of waiting) stream.write(frame);
  }

  #end(reason: GatewayError): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#waiting = undefined;
    const stream = this.#stream;
    if (stream !== undefined && !stream.closed) {
      stream.close(http2.constants.NGHTTP2_CANCEL);
    }
    this.#events.onEnded(reason);
  }
}

/** DeliverResponse.batches (field 1, a varint); 0 when absent. */
function readBatches(message: Uint8Array, address: string): number {
  let batches = 0;
  let at = 0;
  while (at < message.length) {
    const tag = message[at++]!;
    const field = readVarint(message, at);
    if (field === undefined || tag !== BATCHES_TAG) {
      throw new GatewayError(
        "internal",
        `${address}: the peer sent a DeliverResponse that is not { uint32 batches = 1 }`,
      );
    }
    batches = field.value;
    at = field.end;
  }
  return batches;
}
