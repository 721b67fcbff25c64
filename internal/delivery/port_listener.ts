// The delivery port: a TCP (or TLS) listener that takes peers' Deliver
// batches over a plain framed connection (delivery_port_wire.ts) instead of
// the gRPC stream, because on Deno the HTTP/2 layer costs more per batch
// than applying the batch. Peers learn the port from the gRPC Deliver
// endpoint (DELIVERY_PORT_HEADER) and switch over between batches; the
// gRPC stream stays the fallback, and the only way for mutual TLS, which
// Deno's TLS listener cannot require.

import { Code } from "@connectrpc/connect";
import { applyPacked } from "./codec.ts";
import {
  BATCH_HEADER_BYTES,
  encodeAck,
  encodeError,
  HELLO_HEADER_BYTES,
  MAGIC,
  ReadBuffer,
  readU32,
  READY,
  VERSION,
} from "./port_wire.ts";
import { secretMatcher } from "../grpc/auth.ts";
import { formatHostPort } from "../base/address.ts";
import { sleep } from "../base/backoff.ts";
import type { LocalHub } from "../hub/local_hub.ts";
import type { Logger } from "../base/logger.ts";
import type { CheckedTls } from "../base/options.ts";
import { toConnectError } from "../grpc/grpc_status.ts";
import { closeQuietly, ConnWriter } from "./conn_io.ts";

/** How long to wait after a failed accept before the next one. */
const ACCEPT_RETRY_MS = 100;

/** Options of {@linkcode listenDeliveryPort}. */
export interface DeliveryPortOptions {
  readonly hostname: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly hub: LocalHub;
  /** Connections without this secret are refused. */
  readonly secret?: string | undefined;
  /** Listen with TLS (server certificate only). */
  readonly tls?: CheckedTls | undefined;
  /** The most bytes one batch may have. */
  readonly readMaxBytes: number;
  /** A connection that has not said hello this soon is dropped. */
  readonly helloTimeoutMs: number;
  readonly logger: Logger;
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
    throw new Error(
      `Cannot listen on the delivery port ${formatHostPort(hostname, port)}: ${
        error instanceof Deno.errors.AddrInUse
          ? "the port is in use (set deliveryPort to another port, or 0)"
          : error instanceof Error
          ? error.message
          : String(error)
      }`,
      { cause: error },
    );
  }
  const matches = options.secret === undefined
    ? undefined
    : secretMatcher(options.secret);
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
      const done = serve(conn, options, matches).finally(() => {
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
async function serve(
  conn: Deno.Conn,
  options: DeliveryPortOptions,
  matches: ((secret: string) => boolean) | undefined,
) {
  const { hub, readMaxBytes, logger } = options;
  const writer = new ConnWriter(conn);
  const input = new ReadBuffer();
  const refuse = (code: Code, message: string) => {
    logger.debug("refused a delivery connection", { reason: message });
    writer.write(encodeError(code, message));
  };
  try {
    const refused = await readHello(
      conn,
      input,
      options.helloTimeoutMs,
      matches,
    );
    if (refused !== undefined) {
      return refused === NO_HELLO ? undefined : refuse(...refused);
    }
    writer.write(new Uint8Array([READY]));
    let applied = 0;
    let acknowledging = false;
    const acknowledge = () => {
      acknowledging = false;
      writer.write(encodeAck(applied));
      applied = 0;
    };
    for (;;) {
      while (input.size < BATCH_HEADER_BYTES) {
        if (!await input.fill(conn, BATCH_HEADER_BYTES)) return;
      }
      const length = readU32(input.view(), 0);
      if (length > readMaxBytes) {
        return refuse(
          Code.ResourceExhausted,
          `a batch of ${length} bytes is larger than the limit of ${readMaxBytes}`,
        );
      }
      const need = BATCH_HEADER_BYTES + length;
      while (input.size < need) {
        if (!await input.fill(conn, need)) return;
      }
      // A copy: binary payloads are views of it, and the read buffer is
      // reused.
      const packed = input.view().slice(BATCH_HEADER_BYTES, need);
      input.consume(need);
      try {
        applyPacked(hub, packed);
      } catch (error) {
        const status = toConnectError(error);
        return refuse(status.code, status.rawMessage);
      }
      applied++;
      if (!acknowledging) {
        acknowledging = true;
        queueMicrotask(acknowledge);
      }
    }
  } catch (error) {
    // The peer went away, or this service closes the connection.
    logger.debug("delivery connection ended", { error: String(error) });
  } finally {
    await writer.flushed();
    closeQuietly(conn);
  }
}

/** A connection that ended or timed out before its hello. */
const NO_HELLO = "no hello";

/**
 * Reads the hello; resolves undefined when it is accepted, else the status
 * it is refused with, or {@linkcode NO_HELLO}.
 */
async function readHello(
  conn: Deno.Conn,
  input: ReadBuffer,
  timeoutMs: number,
  matches: ((secret: string) => boolean) | undefined,
): Promise<[Code, string] | typeof NO_HELLO | undefined> {
  const timer = setTimeout(() => closeQuietly(conn), timeoutMs);
  try {
    while (input.size < HELLO_HEADER_BYTES) {
      if (!await input.fill(conn, HELLO_HEADER_BYTES)) return NO_HELLO;
    }
    const header = input.view();
    if (
      MAGIC.some((byte, i) => header[i] !== byte) ||
      header[MAGIC.length] !== VERSION
    ) {
      return [
        Code.InvalidArgument,
        `not a delivery connection (expected "WSGD" version ${VERSION})`,
      ];
    }
    const secretBytes = header[MAGIC.length + 1]! << 8 |
      header[MAGIC.length + 2]!;
    const need = HELLO_HEADER_BYTES + secretBytes;
    while (input.size < need) {
      if (!await input.fill(conn, need)) return NO_HELLO;
    }
    const given = new TextDecoder().decode(
      input.view().subarray(HELLO_HEADER_BYTES, need),
    );
    input.consume(need);
    if (matches === undefined || matches(given)) return undefined;
    return [
      Code.Unauthenticated,
      secretBytes === 0 ? "Missing secret" : "Wrong secret",
    ];
  } finally {
    clearTimeout(timer);
  }
}
