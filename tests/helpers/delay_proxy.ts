// Test helper: a TCP proxy that delays every chunk by a fixed time in each
// direction, as a long link would (this kernel has no netem). Chunks keep
// their order and are not held back by each other: one read at t leaves at
// t + delay, however many are on their way, so the delay adds latency and
// no throughput limit (up to MAX_QUEUED_BYTES in flight per direction).
//
// As a script, run inside a network namespace (tests/helpers/netns.ts):
//
//   deno run -A tests/helpers/delay_proxy.ts --delay-ms 50 \
//     LISTEN_HOST:PORT=TARGET_HOST:PORT [...]
//
// It prints "delay proxy ready" once every listener is open, and runs until
// it is killed.

/** Bytes that may be on their way in one direction before reading pauses. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;

/** Options of {@linkcode startDelayProxy}. */
export interface DelayProxyOptions {
  /** Where to listen. */
  listen: { hostname: string; port: number };
  /** Where each accepted connection is forwarded. */
  target: { hostname: string; port: number };
  /** Added to each direction, in milliseconds. */
  delayMs: number;
}

/** A running proxy. */
export interface DelayProxy extends AsyncDisposable {
  /** The port it listens on. */
  readonly port: number;
  /** Stops accepting and cuts the connections it carries. */
  close(): Promise<void>;
}

/** Listens, and forwards each connection to the target with the delay. */
export function startDelayProxy(options: DelayProxyOptions): DelayProxy {
  const listener = Deno.listen({
    hostname: options.listen.hostname,
    port: options.listen.port,
  });
  const conns = new Set<Deno.Conn>();
  const pipes = new Set<Promise<void>>();
  const accepting = (async () => {
    for await (const inbound of listener) {
      const pipe = forward(inbound, options, conns).catch(() => {});
      pipes.add(pipe);
      pipe.finally(() => pipes.delete(pipe));
    }
  })().catch(() => {});
  const close = async () => {
    try {
      listener.close();
    } catch {
      // Already closed.
    }
    for (const conn of conns) closeQuietly(conn);
    await accepting;
    await Promise.all(pipes);
  };
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close,
    [Symbol.asyncDispose]: close,
  };
}

async function forward(
  inbound: Deno.Conn,
  options: DelayProxyOptions,
  conns: Set<Deno.Conn>,
): Promise<void> {
  conns.add(inbound);
  let outbound: Deno.TcpConn;
  try {
    outbound = await Deno.connect(options.target);
  } catch {
    closeQuietly(inbound);
    conns.delete(inbound);
    return;
  }
  conns.add(outbound);
  (inbound as Deno.TcpConn).setNoDelay?.(true);
  outbound.setNoDelay(true);
  await Promise.all([
    delayed(inbound, outbound, options.delayMs),
    delayed(outbound, inbound, options.delayMs),
  ]);
  closeQuietly(inbound);
  closeQuietly(outbound);
  conns.delete(inbound);
  conns.delete(outbound);
}

/** Copies `from` to `to`, each chunk `delayMs` after it was read. */
async function delayed(
  from: Deno.Conn,
  to: Deno.Conn,
  delayMs: number,
): Promise<void> {
  const queue: { due: number; data: Uint8Array }[] = [];
  let queued = 0;
  let ended = false;
  let failed = false;
  let wake: (() => void) | undefined;
  let drained: (() => void) | undefined;
  const reading = (async () => {
    try {
      while (true) {
        const buffer = new Uint8Array(64 * 1024);
        const n = await from.read(buffer);
        if (n === null) break;
        queue.push({
          due: performance.now() + delayMs,
          data: buffer.subarray(0, n),
        });
        queued += n;
        wake?.();
        while (queued > MAX_QUEUED_BYTES && !failed) {
          await new Promise<void>((resolve) => drained = resolve);
        }
        if (failed) break;
      }
    } catch {
      // The connection broke or was closed.
    }
    ended = true;
    wake?.();
  })();
  try {
    while (true) {
      const head = queue[0];
      if (head === undefined) {
        if (ended) break;
        await new Promise<void>((resolve) => wake = resolve);
        wake = undefined;
        continue;
      }
      const wait = head.due - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      queue.shift();
      let written = 0;
      while (written < head.data.length) {
        written += await to.write(head.data.subarray(written));
      }
      queued -= head.data.length;
      if (queued <= MAX_QUEUED_BYTES) drained?.();
    }
    await (to as Deno.TcpConn).closeWrite?.();
  } catch {
    // The other side is gone: stop reading this one too.
    failed = true;
    drained?.();
    closeQuietly(from);
  }
  await reading;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** `HOST:PORT=HOST:PORT` as listen and target addresses. */
function parseRoute(
  text: string,
): Pick<DelayProxyOptions, "listen" | "target"> {
  const match = /^(.+):(\d+)=(.+):(\d+)$/.exec(text);
  if (match === null) {
    throw new TypeError(
      `Cannot read route ${text}: use LISTEN_HOST:PORT=TARGET_HOST:PORT`,
    );
  }
  return {
    listen: { hostname: match[1]!, port: Number(match[2]) },
    target: { hostname: match[3]!, port: Number(match[4]) },
  };
}

function main(): void {
  const args = [...Deno.args];
  let delayMs = 50;
  const at = args.indexOf("--delay-ms");
  if (at >= 0) {
    delayMs = Number(args[at + 1]);
    args.splice(at, 2);
  }
  for (const route of args) startDelayProxy({ ...parseRoute(route), delayMs });
  console.log(`delay proxy ready (${delayMs} ms each way)`);
}

if (import.meta.main) main();
