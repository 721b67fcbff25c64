// Test helper: a TCP proxy in front of a service that can break the
// connections it carries the way a network does: cut them (both sides
// closed at once, no WebSocket close frame: the peers see the connection
// end, 1006) or freeze them (nothing forwarded until thawed: a dead link
// that the heartbeats must notice).

/** Options of {@linkcode startCutProxy}. */
export interface CutProxyOptions {
  /** Where connections go, `"host:port"`. */
  readonly target: string;
  /** The port to listen on, on 127.0.0.1; 0 picks a free one. */
  readonly port?: number;
}

/** A running proxy. */
export interface CutProxy extends AsyncDisposable {
  /** The port it listens on. */
  readonly port: number;
  /** `127.0.0.1:<port>`. */
  readonly address: string;
  /** Connections it carries now. */
  readonly connections: number;
  /** Connections it accepted so far. */
  readonly accepted: number;
  /** Cuts every connection it carries now: both sides closed at once. */
  cutAll(): void;
  /** Stops forwarding on every connection, new ones too, until thawed. */
  freeze(): void;
  /** Forwards again what waited while frozen, and what comes next. */
  thaw(): void;
  /** Stops listening and cuts every connection. */
  close(): Promise<void>;
}

interface Pair {
  readonly client: Deno.Conn;
  readonly server: Deno.Conn;
  cut: boolean;
  /** Resolves when the pair is cut. */
  readonly done: PromiseWithResolvers<void>;
}

/**
 * Starts a proxy on 127.0.0.1 that forwards each connection to `target`.
 *
 * @example Cutting a connection
 * ```ts ignore
 * await using proxy = await startCutProxy({ target: `127.0.0.1:${service.port}` });
 * const socket = new WebSocket(`ws://${proxy.address}/`);
 * proxy.cutAll(); // the socket closes with 1006
 * ```
 */
export function startCutProxy(
  options: CutProxyOptions,
): Promise<CutProxy> {
  const colon = options.target.lastIndexOf(":");
  const hostname = options.target.slice(0, colon);
  const targetPort = Number(options.target.slice(colon + 1));
  const listener = Deno.listen({
    hostname: "127.0.0.1",
    port: options.port ?? 0,
  });
  const pairs = new Set<Pair>();
  const tasks = new Set<Promise<void>>();
  let frozen: PromiseWithResolvers<void> | undefined;
  let accepted = 0;
  let closed = false;

  function cut(pair: Pair): void {
    if (pair.cut) return;
    pair.cut = true;
    pair.done.resolve();
    pairs.delete(pair);
    for (const conn of [pair.client, pair.server]) {
      try {
        conn.close();
      } catch {
        // Closed already.
      }
    }
  }

  async function thawed(pair: Pair): Promise<void> {
    while (frozen !== undefined && !pair.cut) {
      await Promise.race([frozen.promise, pair.done.promise]);
    }
  }

  async function forward(pair: Pair, from: Deno.Conn, to: Deno.Conn) {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        await thawed(pair);
        if (pair.cut) return;
        const n = await from.read(buffer);
        if (n === null) return;
        await thawed(pair);
        if (pair.cut) return;
        let written = 0;
        while (written < n) {
          written += await to.write(buffer.subarray(written, n));
        }
      }
    } catch {
      // Either side failed: the pair is cut below.
    } finally {
      cut(pair);
    }
  }

  async function accept(client: Deno.Conn): Promise<void> {
    let server: Deno.Conn;
    try {
      server = await Deno.connect({ hostname, port: targetPort });
    } catch {
      client.close();
      return;
    }
    if (closed) {
      client.close();
      server.close();
      return;
    }
    const pair: Pair = {
      client,
      server,
      cut: false,
      done: Promise.withResolvers<void>(),
    };
    pairs.add(pair);
    await Promise.all([
      forward(pair, client, server),
      forward(pair, server, client),
    ]);
  }

  const accepting = (async () => {
    for (;;) {
      let client: Deno.Conn;
      try {
        client = await listener.accept();
      } catch {
        return;
      }
      accepted++;
      const task = accept(client);
      tasks.add(task);
      task.finally(() => tasks.delete(task));
    }
  })();

  const port = (listener.addr as Deno.NetAddr).port;
  const close = async () => {
    if (!closed) {
      closed = true;
      listener.close();
      frozen?.resolve();
      frozen = undefined;
      for (const pair of [...pairs]) cut(pair);
    }
    await accepting;
    await Promise.all([...tasks]);
  };
  return Promise.resolve({
    port,
    address: `127.0.0.1:${port}`,
    get connections() {
      return pairs.size;
    },
    get accepted() {
      return accepted;
    },
    cutAll() {
      for (const pair of [...pairs]) cut(pair);
    },
    freeze() {
      frozen ??= Promise.withResolvers<void>();
    },
    thaw() {
      frozen?.resolve();
      frozen = undefined;
    },
    close,
    [Symbol.asyncDispose]: close,
  });
}
