// The receiving end of the gRPC Deliver stream. Plain gRPC calls
// (protobuf, no compression: what services send) are served on node:http2
// directly with gRPC framing by hand, because this is the hot path between
// services and Connect's generic streaming pipeline costs more than the
// deliveries themselves; the others (another codec, compression) reach
// Connect's handler, which hands its decoded requests to
// `serveDeliverStream`. Both apply and acknowledge through one
// DeliveryReceiver. A plain call that names its connection (LINK_HEADER)
// is checked against its sender's other connections
// (newest_connections.ts); Connect's path is not (services send plain
// calls).

import type * as http2 from "node:http2";
import type { MessageInitShape } from "npm:@bufbuild/protobuf@2.17.0";
import type {
  DeliverRequest,
  DeliverResponseSchema,
} from "../../proto/gen/websocket/v1/gateway_pb.ts";
import { GatewayError } from "../../errors.ts";
import {
  GRPC_FRAME_HEADER_BYTES,
  GrpcFrameReader,
  statusTrailers,
  writeFrameHeader,
} from "../grpc/grpc_frame.ts";
import type { RawGrpcMethod } from "../grpc/rpc_server.ts";
import type { DeliveryTarget } from "./codec.ts";
import { batchOfBytes, batchOfRequest } from "./grpc_request.ts";
import { type LinkId, parseLinkId } from "./link_id.ts";
import { DeliveryReceiver, type ReceiverOptions } from "./receiver.ts";
import {
  BATCHES_TAG,
  DELIVER_PATH,
  DELIVERY_PORT_HEADER,
  HOLDINGS_HEADER,
  LINK_HEADER,
  writeVarint,
} from "./wire.ts";

/**
 * Serves plain Deliver calls. When `deliveryPort` gives a port, the
 * response headers tell the peer about it (port_listener.ts); when
 * `receiving` takes holder announcements, they say so (HOLDINGS_HEADER).
 */
export function deliverEndpoint(
  target: DeliveryTarget,
  deliveryPort: () => number | undefined,
  receiving: ReceiverOptions = {},
): RawGrpcMethod {
  return {
    path: DELIVER_PATH,
    serve(req, res, { readMaxBytes, signal }) {
      const named = req.headers[LINK_HEADER];
      let link: LinkId | undefined;
      try {
        link = typeof named === "string" ? parseLinkId(named) : undefined;
      } catch (error) {
        res.writeHead(200, {
          "content-type": "application/grpc",
          ...statusTrailers(GatewayError.from(error)),
        });
        res.end();
        return;
      }
      const port = deliveryPort();
      res.writeHead(200, {
        "content-type": "application/grpc",
        ...(port === undefined ? {} : { [DELIVERY_PORT_HEADER]: String(port) }),
        ...(receiving.holdings === undefined ? {} : { [HOLDINGS_HEADER]: "1" }),
      });
      new DeliverCall(target, req, res, readMaxBytes, signal, receiving, link);
    },
  };
}

/** One plain Deliver call, from its first request to its status. */
class DeliverCall {
  readonly #res: http2.Http2ServerResponse;
  readonly #reader: GrpcFrameReader;
  readonly #receiver: DeliveryReceiver;
  readonly #signal: AbortSignal;
  readonly #onAbort = () =>
    this.#finish(
      new GatewayError("unavailable", "the service is shutting down"),
    );
  #finished = false;

  constructor(
    target: DeliveryTarget,
    req: http2.Http2ServerRequest,
    res: http2.Http2ServerResponse,
    readMaxBytes: number,
    signal: AbortSignal,
    receiving: ReceiverOptions,
    link: LinkId | undefined,
  ) {
    this.#res = res;
    this.#reader = new GrpcFrameReader(readMaxBytes);
    this.#receiver = new DeliveryReceiver(
      target,
      (batches) => res.write(encodeResponse(batches)),
      receiving,
      // A newer connection of the same sender took over.
      link && { link, end: (error) => this.#finish(error) },
    );
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
          ? new GatewayError(
            "invalid_argument",
            "the request stream ended inside a message",
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
      this.#reader.push(
        chunk,
        (message) => this.#receiver.receive(batchOfBytes(message)),
      );
    } catch (error) {
      this.#finish(GatewayError.from(error));
    }
  }

  /**
   * Ends the call with `error` or OK, after acknowledging what was applied;
   * without `answer` when the client is gone.
   */
  #finish(error: GatewayError | undefined, answer = true): void {
    if (this.#finished) return;
    if (answer) this.#receiver.flush();
    this.#receiver.close();
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

/** DeliverResponse { uint32 batches = 1 } in its gRPC frame. */
function encodeResponse(batches: number): Uint8Array {
  const frame = new Uint8Array(GRPC_FRAME_HEADER_BYTES + 6);
  frame[GRPC_FRAME_HEADER_BYTES] = BATCHES_TAG;
  const end = writeVarint(frame, GRPC_FRAME_HEADER_BYTES + 1, batches);
  writeFrameHeader(frame, 0, end - GRPC_FRAME_HEADER_BYTES);
  return frame.subarray(0, end);
}

/**
 * Serves a Deliver call that Connect decoded: applies each request as it
 * arrives and yields the acknowledgements. Requests are read and applied
 * independently of the responses, so acknowledgements coalesce as on the
 * plain path. Only message deliveries are counted: holder announcements
 * are not offered on this path (it sends no HOLDINGS_HEADER).
 */
export async function* serveDeliverStream(
  target: DeliveryTarget,
  requests: AsyncIterable<DeliverRequest>,
  receiving: ReceiverOptions = {},
): AsyncGenerator<MessageInitShape<typeof DeliverResponseSchema>> {
  let acknowledged = 0;
  let ended = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const awake = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const receiver = new DeliveryReceiver(target, (batches) => {
    acknowledged += batches;
    awake();
  }, { counts: receiving.counts });
  // Ends with the request stream; it records its failure and never throws.
  (async () => {
    try {
      for await (const request of requests) {
        receiver.receive(batchOfRequest(request));
      }
    } catch (error) {
      failure = error;
    } finally {
      receiver.flush();
      receiver.close();
      ended = true;
      awake();
    }
  })();
  for (;;) {
    if (acknowledged > 0) {
      const batches = acknowledged;
      acknowledged = 0;
      yield { batches };
    } else if (ended) {
      if (failure !== undefined) throw failure;
      return;
    } else {
      await new Promise<void>((resolve) => wake = resolve);
    }
  }
}
