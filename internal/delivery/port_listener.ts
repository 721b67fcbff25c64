// The delivery port: a TCP (or TLS) listener that takes peers' batches over
// a plain framed connection (wire.ts) instead of the gRPC stream, because
// on Deno the HTTP/2 layer costs more per batch than applying the batch.
// Peers learn the port from the gRPC Deliver endpoint
// (DELIVERY_PORT_HEADER) and switch over between batches; the gRPC stream
// stays the fallback, and the only way for mutual TLS, which Deno's TLS
// listener cannot require.

import { GatewayError } from "../../errors.ts";
import type { NodeVerifier } from "../base/node_verifier.ts";
import { sleep } from "../base/backoff.ts";
import type { Logger } from "../base/logger.ts";
import type { CheckedTls } from "../base/options.ts";
import { type ListenOptionNames, toListenError } from "../base/listen_error.ts";
import { grpcCodeOf } from "../grpc/grpc_status.ts";
import type { DeliveryTarget } from "./codec.ts";
import { closeQuietly, ConnWriter, ReadBuffer } from "../base/conn_io.ts";
import { type LinkId, parseLinkId } from "./link_id.ts";
import { DeliveryReceiver, type ReceiverOptions } from "./receiver.ts";
import {
  BATCH_LENGTH_BYTES,
  HELLO_HEADER_BYTES,
  LINK_VERSION,
  MAGIC,
  PORT_MESSAGE,
  readU32,
  VERSION,
  writeU32,
} from "./wire.ts";

/** How long to wait after a failed accept before the next one. */
const ACCEPT_RETRY_MS = 100;

/** Options of {@linkcode listenDeliveryPort}. */
export interface DeliveryPortOptions {
  readonly hostname: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** Where batches are applied: this service's clients. */
  readonly target: DeliveryTarget;
  /**
   * Where holder announcements go, and what is counted.
   *
   * @default {{}}
   */
  readonly receiving?: ReceiverOptions | undefined;
  /**
   * Checks the node proof of each hello (the RPC server's verifier: the
   * proof is the one a peer's gRPC calls carry); unset, any hello is let in.
   */
  readonly verifier?: NodeVerifier | undefined;
  /** Listen with TLS (server certificate only). */
  readonly tls?: CheckedTls | undefined;
  /** The most bytes one batch may have. */
  readonly readMaxBytes: number;
  /** A connection that has not said hello this soon is dropped. */
  readonly helloTimeoutMs: number;
  readonly logger: Logger;
  /**
   * The options that set `port` and `hostname`, as a failure to listen
   * names them (see internal/base/listen_error.ts).
   *
   * @default {{ port: "deliveryPort", hostname: "rpcHostname" }}
   */
  readonly optionNames?: ListenOptionNames | undefined;
}

/** A listening delivery port. */
export interface DeliveryPort {
  readonly port: number;
  /** Stops listening and drops every connection. */
  close(): Promise<void>;
}

/** Starts listening on the delivery port. */
export function listenDeliveryPort(options: DeliveryPortOptions): DeliveryPort {
  const { hostname, port, tls } = options;
  let listener: Deno.Listener;
  try {
    listener = tls === undefined
      ? Deno.listen({ hostname, port })
      : Deno.listenTls({ hostname, port, cert: tls.cert, key: tls.key });
  } catch (error) {
    throw toListenError(
      error,
      hostname,
      port,
      options.optionNames ??
        { port: "deliveryPort", hostname: "rpcHostname" },
    );
  }
  const conns = new Set<Deno.Conn>();
  const served = new Set<Promise<void>>();
  let closing: Promise<void> | undefined;
  const accepting = (async () => {
    while (closing === undefined) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (closing !== undefined) return;
        // Out of file descriptors, say: peers stay on gRPC meanwhile.
        options.logger.warn("delivery port could not accept a connection", {
          error: String(error),
        });
        await sleep(ACCEPT_RETRY_MS);
        continue;
      }
      conns.add(conn);
      const done = serve(conn, options).finally(() => {
        conns.delete(conn);
        served.delete(done);
      });
      served.add(done);
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close() {
      closing ??= (async () => {
        listener.close();
        for (const conn of conns) closeQuietly(conn);
        await accepting;
        await Promise.all(served);
      })();
      return closing;
    },
  };
}

/** Serves one peer's connection until it closes or breaks the protocol. */
async function serve(conn: Deno.Conn, options: DeliveryPortOptions) {
  const { target, readMaxBytes, logger } = options;
  const writer = new ConnWriter(conn);
  const input = new ReadBuffer();
  const refuse = (error: GatewayError) => {
    logger.debug("refused a delivery connection", { reason: error.message });
    writer.write(encodeError(error));
  };
  let receiver: DeliveryReceiver | undefined;
  try {
    const hello = await readHello(
      conn,
      input,
      options.helloTimeoutMs,
      options.verifier,
    );
    if (hello === NO_HELLO) return;
    if (hello instanceof GatewayError) return refuse(hello);
    const link = hello.link;
    receiver = new DeliveryReceiver(
      target,
      (batches) => writer.write(encodeAck(batches)),
      options.receiving,
      link && {
        link,
        // A newer connection of the same sender took over.
        end(error) {
          refuse(error);
          writer.flushed().then(() => closeQuietly(conn));
        },
      },
    );
    writer.write(new Uint8Array([PORT_MESSAGE.READY]));
    for (;;) {
      while (input.size < BATCH_LENGTH_BYTES) {
        if (!await input.fill(conn, BATCH_LENGTH_BYTES)) return;
      }
      const length = readU32(input.view(), 0);
      if (length > readMaxBytes) {
        return refuse(
          new GatewayError(
            "resource_exhausted",
            `a batch of ${length} bytes is larger than the limit of ${readMaxBytes}`,
          ),
        );
      }
      const need = BATCH_LENGTH_BYTES + length;
      while (input.size < need) {
        if (!await input.fill(conn, need)) return;
      }
      // A copy: binary payloads are views of it, and the read buffer is
      // reused.
      const packed = input.view().slice(BATCH_LENGTH_BYTES, need);
      input.consume(need);
      try {
        receiver.receive(packed);
      } catch (error) {
        receiver.flush();
        return refuse(GatewayError.from(error));
      }
    }
  } catch (error) {
    // The peer went away, or this service closes the connection.
    logger.debug("delivery connection ended", { error: String(error) });
  } finally {
    receiver?.close();
    await writer.flushed();
    closeQuietly(conn);
  }
}

/** ACK of `batches` batches. */
function encodeAck(batches: number): Uint8Array {
  const ack = new Uint8Array(5);
  ack[0] = PORT_MESSAGE.ACK;
  writeU32(ack, 1, batches);
  return ack;
}

/** ERROR with the gRPC code and the message of `error`. */
function encodeError(error: GatewayError): Uint8Array {
  const text = new TextEncoder().encode(error.message).subarray(0, 0xffff);
  const frame = new Uint8Array(4 + text.length);
  frame[0] = PORT_MESSAGE.ERROR;
  frame[1] = grpcCodeOf(error);
  frame[2] = text.length >>> 8;
  frame[3] = text.length & 0xff;
  frame.set(text, 4);
  return frame;
}

/** A connection that ended or timed out before its hello. */
const NO_HELLO = "no hello";

/** An accepted hello: the connection's link id, if it named one. */
interface Hello {
  readonly link: LinkId | undefined;
}

/**
 * Reads the hello; resolves with it when it is accepted, else with the
 * status it is refused with, or {@linkcode NO_HELLO}.
 */
async function readHello(
  conn: Deno.Conn,
  input: ReadBuffer,
  timeoutMs: number,
  verifier: NodeVerifier | undefined,
): Promise<Hello | GatewayError | typeof NO_HELLO> {
  const timer = setTimeout(() => closeQuietly(conn), timeoutMs);
  try {
    while (input.size < HELLO_HEADER_BYTES) {
      if (!await input.fill(conn, HELLO_HEADER_BYTES)) return NO_HELLO;
    }
    const header = input.view();
    const version = header[MAGIC.length];
    if (
      MAGIC.some((byte, i) => header[i] !== byte) ||
      (version !== VERSION && version !== LINK_VERSION)
    ) {
      return new GatewayError(
        "invalid_argument",
        version === 1 && MAGIC.every((byte, i) => header[i] === byte)
          ? `a delivery connection of version 1, which sent the secret itself: upgrade the peer (expected "WSGD" version ${VERSION} or ${LINK_VERSION}, with a node proof)`
          : `not a delivery connection (expected "WSGD" version ${VERSION} or ${LINK_VERSION})`,
      );
    }
    const tokenBytes = header[MAGIC.length + 1]! << 8 |
      header[MAGIC.length + 2]!;
    let need = HELLO_HEADER_BYTES + tokenBytes;
    // Version 3: the link id's length after the proof.
    if (version === LINK_VERSION) need++;
    while (input.size < need) {
      if (!await input.fill(conn, need)) return NO_HELLO;
    }
    const decoder = new TextDecoder();
    const token = decoder.decode(
      input.view().subarray(
        HELLO_HEADER_BYTES,
        HELLO_HEADER_BYTES + tokenBytes,
      ),
    );
    let linkText: string | undefined;
    if (version === LINK_VERSION) {
      const start = need;
      need += input.view()[need - 1]!;
      while (input.size < need) {
        if (!await input.fill(conn, need)) return NO_HELLO;
      }
      linkText = decoder.decode(input.view().subarray(start, need));
    }
    input.consume(need);
    // The proof first: a caller without it learns nothing else.
    const refused = verifier?.verify(token)?.error;
    if (refused !== undefined) return refused;
    try {
      return {
        link: linkText === undefined ? undefined : parseLinkId(linkText),
      };
    } catch (error) {
      return GatewayError.from(error);
    }
  } finally {
    clearTimeout(timer);
  }
}
