// The server side of the Deliver stream, served on node:http2 directly
// with gRPC framing by hand: it is the hot path between services, and
// Connect's generic streaming pipeline costs more than the deliveries
// themselves. Calls it does not take (another codec, compression) are
// served by the Connect handler in gateway_handler.ts instead.

import type * as http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { GatewayService } from "../../proto/gen/websocket/v1/gateway_pb.ts";
import { applyDeliverBytes } from "./deliver_request.ts";
import {
  FRAME_HEADER_BYTES,
  GrpcFrameReader,
  statusTrailers,
  writeFrameHeader,
  writeVarint,
} from "../grpc/grpc_frame.ts";
import type { LocalHub } from "../hub/local_hub.ts";
import { DELIVERY_PORT_HEADER } from "./port_wire.ts";
import type { RawGrpcMethod } from "../grpc/rpc_server.ts";
import { toConnectError } from "../grpc/grpc_status.ts";

/** DeliverResponse's tag of field 1 (`batches`), a varint. */
export const BATCHES_TAG = 0x08;

/** The HTTP/2 path of GatewayService.Deliver. */
export const DELIVER_PATH =
  `/${GatewayService.typeName}/${GatewayService.method.deliver.name}`;

/**
 * Serves Deliver calls: applies each batch as it arrives and acknowledges
 * them in order. Acknowledgements coalesce: one DeliverResponse counts
 * every batch applied since the previous one was written. When
 * `deliveryPort` gives a port, the response headers tell the peer about it
 * (delivery_port.ts).
 */
export function deliverEndpoint(
  hub: LocalHub,
  deliveryPort: () => number | undefined,
): RawGrpcMethod {
  return {
    path: DELIVER_PATH,
    serve(req, res, { readMaxBytes, signal }) {
      const port = deliveryPort();
      res.writeHead(200, {
        "content-type": "application/grpc",
        ...(port === undefined ? {} : { [DELIVERY_PORT_HEADER]: String(port) }),
      });
      new DeliverCallHandler(hub, req, res, readMaxBytes, signal);
    },
  };
}

class DeliverCallHandler {
  readonly #hub: LocalHub;
  readonly #res: http2.Http2ServerResponse;
  readonly #reader: GrpcFrameReader;
  readonly #signal: AbortSignal;
  readonly #onAbort = () =>
    this.#finish(
      new ConnectError("the service is shutting down", Code.Unavailable),
    );
  /** Batches applied and not acknowledged yet. */
  #applied = 0;
  #acknowledging = false;
  #finished = false;

  constructor(
    hub: LocalHub,
    req: http2.Http2ServerRequest,
    res: http2.Http2ServerResponse,
    readMaxBytes: number,
    signal: AbortSignal,
  ) {
    this.#hub = hub;
    this.#res = res;
    this.#reader = new GrpcFrameReader(readMaxBytes);
    this.#signal = signal;
    if (signal.aborted) {
      this.#onAbort();
      return;
    }
    signal.addEventListener("abort", this.#onAbort);
    req.on("data", (chunk: Uint8Array) => this.#receive(chunk));
    req.once("end", () => {
      this.#finish(
        this.#reader.partial
          ? new ConnectError(
            "the request stream ended inside a message",
            Code.InvalidArgument,
          )
          : undefined,
      );
    });
    // The client went away: nobody is left to answer.
    req.once("close", () => this.#finish(undefined, false));
    req.once("error", () => this.#finish(undefined, false));
  }

  #receive(chunk: Uint8Array): void {
    if (this.#finished) return;
    try {
      this.#reader.push(chunk, (message) => {
        applyDeliverBytes(this.#hub, message);
        this.#applied++;
      });
    } catch (error) {
      return this.#finish(toConnectError(error));
    }
    if (this.#applied > 0 && !this.#acknowledging) {
      this.#acknowledging = true;
      queueMicrotask(() => this.#acknowledge());
    }
  }

  /** Writes one DeliverResponse counting the batches applied since the last. */
  #acknowledge(): void {
    this.#acknowledging = false;
    const batches = this.#applied;
    if (batches === 0 || this.#finished) return;
    this.#applied = 0;
    // DeliverResponse { uint32 batches = 1 }.
    const frame = new Uint8Array(FRAME_HEADER_BYTES + 6);
    frame[FRAME_HEADER_BYTES] = BATCHES_TAG;
    const at = writeVarint(frame, FRAME_HEADER_BYTES + 1, batches);
    writeFrameHeader(frame, 0, at - FRAME_HEADER_BYTES);
    this.#res.write(frame.subarray(0, at));
  }

  /**
   * Ends the call with `error` or OK, after acknowledging what was applied;
   * without `answer` when the client is gone.
   */
  #finish(error: ConnectError | undefined, answer = true): void {
    if (this.#finished) return;
    if (answer) this.#acknowledge();
    this.#finished = true;
    this.#signal.removeEventListener("abort", this.#onAbort);
    if (!answer || this.#res.writableEnded) return;
    try {
      this.#res.addTrailers(statusTrailers(error));
      this.#res.end();
    } catch {
      // The stream broke meanwhile: the client sees that instead.
    }
  }
}
