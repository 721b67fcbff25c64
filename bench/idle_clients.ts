// Idle client WebSockets in bulk, for the memory and accept-rate runs
// (`deno task bench --conns`, bench/cluster_scale.ts): as many load
// generator processes (bench/load.ts, no phases, only --hold) as the
// open-file limit of a process needs, each on source addresses of its own
// (one source address gives about 28,000 ports), every one spreading its
// clients round-robin over the target's URLs.

import { type Json, runLoad, type Target } from "./harness.ts";

/** Clients per load process: each stays well under the file limit. */
export const CLIENTS_PER_LOADER = 15_000;

/** How {@linkcode startIdleClients} opens its clients. */
export interface IdleOptions {
  /** Seconds each load process keeps its clients open once connected. */
  holdS: number;
  /** Clients per load process (default {@linkcode CLIENTS_PER_LOADER}). */
  perLoader?: number;
  /** Handshakes in flight over all load processes (default 200). */
  concurrency?: number;
  /** Seconds a client may take to connect (default 120). */
  connectTimeoutS?: number;
  /** Called with the number of clients connected so far. */
  onProgress?: (connected: number, total: number) => void;
}

/** Idle clients being opened, then held. */
export interface IdleClients {
  /** Load processes. */
  readonly loaders: number;
  /**
   * Resolves once every load process has connected all its clients, with
   * the ms it took; rejects with the first load process's error.
   */
  readonly connected: Promise<number>;
  /** The load processes' result lines, once they have all ended. */
  readonly done: Promise<Json[]>;
}

/**
 * Opens `clients` idle clients on `target` (rounded down to a multiple of
 * its URLs) from as many load processes as the file limit needs. They
 * stay open for `holdS` seconds after connecting, or until the driver's
 * `stopAll()`.
 */
export function startIdleClients(
  target: Target,
  clients: number,
  options: IdleOptions,
): IdleClients {
  const urls = target.urls.length;
  const rows = Math.floor(clients / urls);
  const perLoader = options.perLoader ?? CLIENTS_PER_LOADER;
  const loaders = Math.max(1, Math.ceil(rows * urls / perLoader));
  const concurrency = Math.ceil((options.concurrency ?? 200) / loaders);
  const total = rows * urls;
  const t0 = performance.now();
  const counts = new Array<number>(loaders).fill(0);
  let connectedLoaders = 0;
  let allConnected!: (ms: number) => void;
  const connected = new Promise<number>((r) => allConnected = r);
  const runs: Promise<Json>[] = [];
  let firstRow = 0;
  for (let k = 0; k < loaders; k++) {
    const n = (Math.round(rows * (k + 1) / loaders) - firstRow) * urls;
    firstRow += n / urls;
    runs.push(runLoad(target, [
      "--clients",
      String(n),
      "--src-addrs",
      `127.0.${1 + k}.2-127.0.${1 + k}.3`,
      "--bcast",
      "0",
      "--bcast-lat",
      "0",
      "--p2p",
      "0",
      "--hold",
      String(options.holdS),
      "--connect-timeout",
      String(options.connectTimeoutS ?? 120),
      "--connect-concurrency",
      String(concurrency),
    ], (line) => {
      const m = /^connecting (\d+)\//.exec(line);
      if (m) counts[k] = Number(m[1]);
      if (line.startsWith("connected ")) {
        counts[k] = n;
        if (++connectedLoaders === loaders) {
          allConnected(performance.now() - t0);
        }
      }
      options.onProgress?.(counts.reduce((a, b) => a + b, 0), total);
    }, options.holdS + (options.connectTimeoutS ?? 120) + 60));
  }
  const done = Promise.all(runs);
  // A load process that ends before all are connected has failed.
  const failed = done.then((results) => {
    const errors = results.filter((r) => r.error).map((r) => String(r.error));
    throw new Error(
      errors[0] ?? "the load processes ended before all clients connected",
    );
  });
  return {
    loaders,
    connected: Promise.race([connected, failed]),
    done,
  };
}
