// An HTTP/1.1 server on a raw listener, for the ports that face the
// internet (a service's WebSocket port, a register's operator port). It
// exists for what Deno.serve does not let us bound: a request head must be
// complete within `headerTimeoutMs`; at most `maxPendingConnections` may be
// waiting for theirs (past it, the oldest is dropped, so that slow or idle
// strangers cannot crowd real clients out); a failed accept (out of file
// descriptors, say) is logged and retried, and frees a waiting connection;
// bodies are bounded; and a handler can take a connection over after a 101
// answer (WebSockets, internal/websocket/).

import { messageOf } from "../base/describe.ts";
import {
  DEFAULT_OPTION_NAMES,
  type ListenOptionNames,
  toListenError,
} from "../base/listen_error.ts";
import type { Logger } from "../base/logger.ts";
import { closeQuietly, ConnWriter, ReadBuffer } from "../base/conn_io.ts";
import { sleep } from "../base/backoff.ts";
import type { HttpCounters } from "../base/http_counters.ts";
import {
  BadRequest,
  type BodyFraming,
  bodyFraming,
  headEnd,
  parseRequestHead,
} from "./request_head.ts";

/** What a handler gets besides the request. */
export interface ConnectionInfo {
  /** The address of the client. */
  readonly remoteAddr: Deno.NetAddr;
  /**
   * Takes the connection over once the handler's answer, `response` (a 101
   * without a body), is written. Resolves with the raw connection and the
   * bytes the client sent after its request head. Call it at most once, for
   * a request without a body, and return `response` from the handler.
   */
  takeOver(response: Response): Promise<TakenConnection>;
}

/** A connection that a handler took over. */
export interface TakenConnection {
  readonly conn: Deno.Conn;
  /** Bytes read past the request head. */
  readonly rest: Uint8Array;
}

/** Answers one request. */
export type HttpHandler = (
  request: Request,
  info: ConnectionInfo,
) => Response | Promise<Response>;

/** Options of {@linkcode listenHttp}. */
export interface HttpServerOptions {
  readonly hostname: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly handler: HttpHandler;
  /**
   * How long a connection may take to send a whole request head (from its
   * accept, or from the end of the previous answer on a kept-alive
   * connection), and the longest a request body may pause.
   */
  readonly headerTimeoutMs: number;
  /** Connections waiting for their request head, at most. */
  readonly maxPendingConnections: number;
  /** The largest request body, in bytes; larger ones are refused with 413. */
  readonly maxBodyBytes: number;
  readonly logger: Logger;
  readonly counters?: HttpCounters | undefined;
  /**
   * The options that set `port` and `hostname`, as a failure to listen
   * names them (see internal/base/listen_error.ts).
   *
   * @default {DEFAULT_OPTION_NAMES}
   */
  readonly optionNames?: ListenOptionNames | undefined;
}

/** A listening HTTP server. */
export interface HttpServer {
  readonly hostname: string;
  readonly port: number;
  /** Connections open now, taken over ones excluded. */
  readonly connections: number;
  /**
   * Stops accepting, closes idle connections at once, lets requests under
   * way finish within `graceMs`, then cuts what is left.
   */
  close(graceMs?: number): Promise<void>;
}

/** How long to wait after a failed accept before the next one. */
const ACCEPT_RETRY_MS = 50;
/** Waiting connections closed after a failed accept, at most. */
const SHED_ON_ACCEPT_ERROR = 16;

/**
 * Starts an HTTP server; it listens when this returns. Throws a
 * `ListenError` when the port is in use or the address is not this
 * machine's.
 */
export function listenHttp(options: HttpServerOptions): HttpServer {
  const { hostname, port, logger } = options;
  let listener: Deno.Listener;
  try {
    listener = Deno.listen({ hostname, port });
  } catch (error) {
    throw toListenError(
      error,
      hostname,
      port,
      options.optionNames ?? DEFAULT_OPTION_NAMES,
    );
  }
  const connections = new Set<HttpConnection>();
  /** Connections waiting for a request head, oldest first. */
  const pending = new Set<HttpConnection>();
  const address = listener.addr as Deno.NetAddr;
  let closing = false;

  const shedOldest = () => {
    const oldest = pending.values().next().value;
    if (oldest === undefined) return false;
    pending.delete(oldest);
    if (options.counters) options.counters.shed++;
    oldest.abort();
    return true;
  };
  const context: ConnectionContext = {
    options,
    waiting(connection, is) {
      pending.delete(connection);
      if (!is) return;
      if (pending.size >= options.maxPendingConnections) shedOldest();
      pending.add(connection);
    },
    done(connection) {
      pending.delete(connection);
      connections.delete(connection);
    },
    get closing() {
      return closing;
    },
    defaultHost: `${
      hostname.includes(":") ? `[${hostname}]` : hostname
    }:${address.port}`,
  };

  const accepting = (async () => {
    let lastWarning = 0;
    while (!closing) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (closing || error instanceof Deno.errors.BadResource) return;
        if (options.counters) options.counters.acceptErrors++;
        if (Date.now() - lastWarning > 10_000) {
          lastWarning = Date.now();
          logger.warn("could not accept a connection; retrying", {
            error: messageOf(error),
            connections: connections.size,
          });
        }
        // Out of file descriptors: the strangers that waited longest make
        // room (a few at a time, so a queue of them clears quickly).
        for (let i = 0; i < SHED_ON_ACCEPT_ERROR && shedOldest(); i++) {
          // Shed one more.
        }
        await sleep(ACCEPT_RETRY_MS);
        continue;
      }
      const connection = new HttpConnection(conn, context);
      connections.add(connection);
      connection.run();
    }
  })();

  let closed: Promise<void> | undefined;
  return {
    hostname,
    port: address.port,
    get connections() {
      return connections.size;
    },
    close(graceMs = 1000) {
      closed ??= (async () => {
        closing = true;
        try {
          listener.close();
        } catch {
          // Closed already.
        }
        await accepting;
        for (const connection of connections) connection.closeIfIdle();
        const deadline = Date.now() + graceMs;
        while (connections.size > 0 && Date.now() < deadline) {
          await sleep(10);
        }
        for (const connection of connections) connection.abort();
      })();
      return closed;
    },
  };
}

/** What a connection needs of its server. */
interface ConnectionContext {
  readonly options: HttpServerOptions;
  /** Whether the connection waits for a request head now. */
  waiting(connection: HttpConnection, waiting: boolean): void;
  /** The connection is closed or taken over. */
  done(connection: HttpConnection): void;
  readonly closing: boolean;
  /** `host:port` for requests without a Host header. */
  readonly defaultHost: string;
}

const encoder = new TextEncoder();

/** One client connection, request after request. */
class HttpConnection {
  readonly #conn: Deno.Conn;
  readonly #context: ConnectionContext;
  readonly #writer: ConnWriter;
  readonly #input = new ReadBuffer(4096);
  #timer: ReturnType<typeof setTimeout> | undefined;
  #idle = true;
  #ended = false;

  constructor(conn: Deno.Conn, context: ConnectionContext) {
    this.#conn = conn;
    this.#context = context;
    this.#writer = new ConnWriter(conn);
  }

  /** Closes the connection at once. */
  abort(): void {
    if (this.#ended) return;
    this.#ended = true;
    clearTimeout(this.#timer);
    this.#writer.drop();
    closeQuietly(this.#conn);
    this.#context.done(this);
  }

  /** Closes the connection if no request is under way. */
  closeIfIdle(): void {
    if (this.#idle) this.abort();
  }

  async run(): Promise<void> {
    try {
      while (!this.#ended) {
        if (!await this.#serveOne()) break;
      }
    } catch (error) {
      // The client went away, or the connection was cut.
      if (!this.#ended) {
        this.#context.options.logger.debug("http connection ended", {
          error: messageOf(error),
        });
      }
    } finally {
      if (!this.#ended) {
        await this.#writer.flushed();
        this.abort();
      }
    }
  }

  /** Reads one request and answers it; false when the connection ends. */
  async #serveOne(): Promise<boolean> {
    const { options } = this.#context;
    this.#idle = true;
    this.#context.waiting(this, true);
    this.#timer = setTimeout(() => {
      if (options.counters) options.counters.headerTimeouts++;
      this.abort();
    }, options.headerTimeoutMs);
    let end: number;
    try {
      end = await this.#readHead();
    } catch (error) {
      if (error instanceof BadRequest) return this.#refuse(error);
      throw error;
    } finally {
      clearTimeout(this.#timer);
      this.#context.waiting(this, false);
    }
    if (end < 0) return false;
    this.#idle = false;
    let head;
    let framing: BodyFraming;
    let headers: Headers;
    try {
      head = parseRequestHead(this.#input.view().subarray(0, end));
      headers = new Headers(head.headers);
      framing = bodyFraming(headers);
    } catch (error) {
      if (error instanceof BadRequest) return this.#refuse(error);
      throw error;
    }
    this.#input.consume(end);
    if (framing.kind === "length" && framing.length > options.maxBodyBytes) {
      return this.#refuse(
        new BadRequest(
          413,
          `the body is larger than ${options.maxBodyBytes} bytes`,
        ),
      );
    }
    const host = headers.get("host") ?? this.#context.defaultHost;
    let url: URL;
    try {
      url = head.target.startsWith("/")
        ? new URL(`http://${host}${head.target}`)
        : new URL(head.target);
    } catch {
      return this.#refuse(
        new BadRequest(400, "the request target is not a URL"),
      );
    }
    const keepAlive = head.minor === 1
      ? !/\bclose\b/i.test(headers.get("connection") ?? "")
      : /\bkeep-alive\b/i.test(headers.get("connection") ?? "");
    const bodyAllowed = head.method !== "GET" && head.method !== "HEAD";
    const reading = framing.kind === "none" || !bodyAllowed
      ? undefined
      : this.#body(framing);
    const body = reading?.stream ?? null;
    if (body !== null && /^100-continue$/i.test(headers.get("expect") ?? "")) {
      this.#writer.write(encoder.encode("HTTP/1.1 100 Continue\r\n\r\n"));
    }
    const request = new Request(url, {
      method: head.method,
      headers,
      ...(body === null ? {} : { body }),
    });
    let takeOver: PromiseWithResolvers<TakenConnection> | undefined;
    let upgrade: Response | undefined;
    const info: ConnectionInfo = {
      remoteAddr: this.#conn.remoteAddr as Deno.NetAddr,
      takeOver: (response) => {
        if (upgrade !== undefined || framing.kind !== "none") {
          return Promise.reject(
            new Error(
              "Cannot take the connection over: once, for a request without a body",
            ),
          );
        }
        upgrade = response;
        takeOver = Promise.withResolvers<TakenConnection>();
        return takeOver.promise;
      },
    };
    let response: Response;
    try {
      response = await options.handler(request, info);
    } catch (error) {
      options.logger.error("request failed", { error: messageOf(error) });
      response = new Response("internal error\n", { status: 500 });
    }
    if (takeOver !== undefined && response !== upgrade) {
      takeOver.reject(new Error("the handler answered with another response"));
    }
    if (this.#ended) {
      takeOver?.reject(new Error("the connection closed"));
      return false;
    }
    if (response === upgrade && response.status === 101 && takeOver) {
      this.#writeHead(response, head.minor, "upgrade");
      await this.#writer.flushed();
      if (this.#writer.failed || this.#ended) {
        takeOver.reject(new Error("the connection closed"));
        return false;
      }
      this.#ended = true;
      this.#context.done(this);
      const rest = this.#input.view().slice();
      this.#input.consume(rest.length);
      takeOver.resolve({ conn: this.#conn, rest });
      return false;
    }
    // A body that was not read to its end (or not at all) must not be read
    // as the next request: such a connection ends after the answer.
    const closing = !keepAlive || this.#context.closing ||
      (framing.kind !== "none" && reading?.complete() !== true);
    await this.#writeResponse(response, head, closing);
    return !closing;
  }

  /** Reads until a request head is complete; -1 when the client hung up. */
  async #readHead(): Promise<number> {
    let from = 0;
    for (;;) {
      const end = headEnd(this.#input.view(), from);
      if (end >= 0) return end;
      from = Math.max(0, this.#input.size - 3);
      if (!await this.#input.fill(this.#conn, this.#input.size + 1)) {
        if (this.#input.size > 0) {
          throw new BadRequest(400, "the request head ends early");
        }
        return -1;
      }
    }
  }

  /**
   * A request body, read as the handler asks for it, within the limits;
   * `complete()` tells whether it was read to its end.
   */
  #body(
    framing: BodyFraming,
  ): { stream: ReadableStream<Uint8Array>; complete(): boolean } {
    const { options } = this.#context;
    const input = this.#input;
    const conn = this.#conn;
    const max = options.maxBodyBytes;
    let left = framing.kind === "length" ? framing.length : 0;
    let total = 0;
    let complete = false;
    const fill = async (need: number) => {
      this.#timer = setTimeout(() => this.abort(), options.headerTimeoutMs);
      try {
        while (input.size < need) {
          if (!await input.fill(conn, need)) {
            throw new BadRequest(400, "the body ends early");
          }
        }
      } finally {
        clearTimeout(this.#timer);
      }
    };
    const take = (n: number) => {
      const chunk = input.view().slice(0, n);
      input.consume(n);
      return chunk;
    };
    const stream = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        try {
          if (framing.kind === "length") {
            if (input.size === 0) await fill(1);
            const chunk = take(Math.min(left, input.size));
            left -= chunk.length;
            controller.enqueue(chunk);
            if (left === 0) {
              complete = true;
              controller.close();
            }
            return;
          }
          // Chunked: a hex size line, the data, CRLF; 0 ends it.
          if (left === 0) {
            const line = await this.#line(fill);
            const size = parseInt(line.split(";")[0]!.trim(), 16);
            if (!/^[0-9a-fA-F]{1,8}$/.test(line.split(";")[0]!.trim())) {
              throw new BadRequest(400, "a chunk size is not hex");
            }
            if (size === 0) {
              // Trailers, up to an empty line.
              while ((await this.#line(fill)) !== "") { /* ignored */ }
              complete = true;
              return controller.close();
            }
            total += size;
            if (total > max) {
              throw new BadRequest(413, `the body is larger than ${max} bytes`);
            }
            left = size;
          }
          if (input.size === 0) await fill(1);
          const chunk = take(Math.min(left, input.size));
          left -= chunk.length;
          if (left === 0) {
            await fill(2);
            const crlf = take(2);
            if (crlf[0] !== 13 || crlf[1] !== 10) {
              throw new BadRequest(400, "a chunk does not end with CRLF");
            }
          }
          controller.enqueue(chunk);
        } catch (error) {
          controller.error(error);
          this.abort();
        }
      },
    });
    return { stream, complete: () => complete };
  }

  /** One CRLF-ended line of a chunked body. */
  async #line(fill: (need: number) => Promise<void>): Promise<string> {
    for (let need = 1;; need++) {
      if (need > 4096) throw new BadRequest(400, "a chunk line is too long");
      await fill(need);
      const view = this.#input.view();
      if (need >= 2 && view[need - 2] === 13 && view[need - 1] === 10) {
        const line = new TextDecoder().decode(view.subarray(0, need - 2));
        this.#input.consume(need);
        return line;
      }
    }
  }

  async #refuse(error: BadRequest): Promise<boolean> {
    const { counters } = this.#context.options;
    if (counters) counters.badRequests++;
    this.#context.options.logger.debug("refused a bad request", {
      status: error.status,
      reason: error.message,
    });
    const text = encoder.encode(`${error.message}\n`);
    this.#writer.write(encoder.encode(
      `HTTP/1.1 ${error.status} ${REASONS[error.status] ?? "Bad Request"}\r\n` +
        `content-type: text/plain; charset=utf-8\r\ncontent-length: ${text.length}\r\n` +
        `connection: close\r\n\r\n`,
    ));
    this.#writer.write(text);
    await this.#writer.flushed();
    return false;
  }

  #writeHead(
    response: Response,
    minor: number,
    connection: string,
    framing?: string,
  ): void {
    let head = `HTTP/1.${minor} ${response.status} ${
      response.statusText || REASONS[response.status] || ""
    }\r\n`;
    for (const [name, value] of response.headers) {
      if (
        HOP_BY_HOP.has(name) &&
        !(connection === "upgrade" && name === "upgrade")
      ) {
        continue;
      }
      head += `${name}: ${value}\r\n`;
    }
    if (framing !== undefined) head += framing;
    head += `connection: ${connection}\r\n\r\n`;
    this.#writer.write(encoder.encode(head));
  }

  async #writeResponse(
    response: Response,
    head: { method: string; minor: number },
    closing: boolean,
  ): Promise<void> {
    const connection = closing ? "close" : "keep-alive";
    const noBody = head.method === "HEAD" || response.status === 204 ||
      response.status === 304 ||
      (response.status >= 100 && response.status < 200);
    const declared = response.headers.get("content-length");
    if (response.body === null || noBody) {
      await response.body?.cancel();
      const status = response.status;
      const length = status === 204 || status === 304 || status < 200
        ? ""
        : head.method === "HEAD"
        ? declared === null ? "" : `content-length: ${declared}\r\n`
        : "content-length: 0\r\n";
      this.#writeHead(response, head.minor, connection, length);
      await this.#writer.flushed();
      return;
    }
    const chunked = declared === null && head.minor === 1;
    this.#writeHead(
      response,
      head.minor,
      chunked || declared !== null ? connection : "close",
      declared !== null
        ? `content-length: ${declared}\r\n`
        : chunked
        ? "transfer-encoding: chunked\r\n"
        : "",
    );
    try {
      for await (const chunk of response.body) {
        if (this.#ended) return;
        if (chunk.length === 0) continue;
        if (chunked) {
          this.#writer.write(
            encoder.encode(`${chunk.length.toString(16)}\r\n`),
          );
          this.#writer.write(chunk);
          this.#writer.write(CRLF);
        } else this.#writer.write(chunk);
        // Write as the body is produced: a slow reader slows the body.
        if (this.#writer.pending > 64 * 1024) await this.#writer.flushed();
      }
      if (chunked) this.#writer.write(LAST_CHUNK);
    } catch (error) {
      this.#context.options.logger.debug("response body failed", {
        error: messageOf(error),
      });
      this.abort();
      return;
    }
    await this.#writer.flushed();
    if (!chunked && declared === null) this.abort();
  }
}

const CRLF = new Uint8Array([13, 10]);
const LAST_CHUNK = encoder.encode("0\r\n\r\n");

/** Headers the server writes itself, never from a handler's response. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "upgrade",
  "content-length",
]);

const REASONS: Record<number, string> = {
  100: "Continue",
  101: "Switching Protocols",
  200: "OK",
  201: "Created",
  204: "No Content",
  301: "Moved Permanently",
  302: "Found",
  304: "Not Modified",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Content Too Large",
  426: "Upgrade Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};
