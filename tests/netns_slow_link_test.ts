// Slow links between hosts in network namespaces (tests/helpers/netns.ts):
// service b is reached by its peers only through a delaying TCP proxy
// (tests/helpers/delay_proxy.ts, 50 ms each way, in a namespace of its
// own) because b announces the proxy's address (`--lan-ip`), and the link
// into service c is capped with a tbf qdisc. The test measures point-to-
// point latency and throughput over these links (it prints them; the
// figures are in docs/network.md) and checks that everything arrives, in
// order. The only timed check is a lower bound: b's messages must take at
// least the proxy's delay, or they did not go through it.
//
// Needs root and iproute2; skipped with a message elsewhere, except with
// CI set, where it fails instead.

import assert from "node:assert/strict";
import { NetLab, netnsSupport } from "./helpers/netns.ts";
import {
  allSeeMembers,
  HOST_PORTS,
  type NetService,
  startNetRegister,
  startNetService,
} from "./helpers/net_cluster.ts";
import { Child } from "./helpers/processes.ts";
import { StreamClient } from "./helpers/stream_client.ts";
import { eventually } from "./helpers/waits.ts";

const DELAY_MS = 50;
const CAP_KBIT = 16_000;
const PROBES = 20;
const BURST = { count: 200, bytes: 16 * 1024 };
const TIMED = ["lat", "tp"].flatMap((kind) =>
  ["ac", "ac-capped", "ab", "ba"].map((link) => `${kind}-${link}`)
);

const netns = await netnsSupport();

/** Median and 95th percentile of `values`, in ms. */
function summary(values: number[]): { median: number; p95: number } {
  const sorted = [...values].sort((x, y) => x - y);
  const at = (q: number) =>
    sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { median: at(0.5), p95: at(0.95) };
}

/** One message at a time from `from` to `to`: how long each took, in ms. */
async function latencies(
  from: StreamClient,
  to: StreamClient,
  stream: string,
): Promise<number[]> {
  const took: number[] = [];
  for (let i = 1; i <= PROBES; i++) {
    const sentAt = performance.now();
    assert.ok(from.send(`c ${to.id} #${stream}:${i}`), "the sender is open");
    await to.until(`${stream} ${i}`, () => to.log(stream).count >= i)
      .catch((error) => {
        throw new Error(
          `${error.message}; the sender heard: ${
            from.others.join(" | ") || "nothing"
          }`,
        );
      });
    took.push(to.log(stream).arrivals!.get(i)! - sentAt);
    // The hook awaits each send, which resolves once the peer acknowledged
    // it (a round trip): let that pass, so each probe finds an idle link.
    await new Promise((resolve) => setTimeout(resolve, 2 * DELAY_MS + 30));
  }
  const log = to.log(stream);
  assert.deepEqual(log.breaks, [], `${stream} in order`);
  return took;
}

/** A burst from `from`'s service to `to`: megabytes a second. */
async function throughput(
  from: StreamClient,
  to: StreamClient,
  stream: string,
): Promise<number> {
  const sentAt = performance.now();
  assert.ok(
    from.send(`burst ${to.id} ${BURST.count} ${BURST.bytes} ${stream}`),
    "the sender is open",
  );
  await to.until(
    `${BURST.count} messages of ${stream}`,
    () => to.log(stream).count >= BURST.count,
    60_000,
  );
  assert.equal(await from.take("burst-done", 10_000), "burst-done");
  const log = to.log(stream);
  assert.deepEqual(log.breaks, [], `${stream} in order`);
  assert.equal(log.count, BURST.count, `${stream} once`);
  const seconds = (log.arrivals!.get(BURST.count)! - sentAt) / 1000;
  return BURST.count * BURST.bytes / seconds / 1e6;
}

Deno.test({
  name: "a delayed and a capped link between hosts carry everything, in order",
  ignore: netns.ignore,
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  await using lab = await NetLab.open();
  const [rHost, aHost, bHost, cHost, pHost] = await lab.addHosts([
    "register",
    "a",
    "b",
    "c",
    "proxy",
  ]);
  const children: Child[] = [];
  const clients: StreamClient[] = [];
  try {
    const proxy = await Child.start("tests/helpers/delay_proxy.ts", [
      "--delay-ms",
      String(DELAY_MS),
      `${pHost.ip}:${HOST_PORTS.rpc}=${bHost.ip}:${HOST_PORTS.rpc}`,
      `${pHost.ip}:${HOST_PORTS.delivery}=${bHost.ip}:${HOST_PORTS.delivery}`,
    ], { prefix: pHost.exec });
    children.push(proxy);
    const register = await startNetRegister({ host: rHost });
    children.push(register.child);
    // A batch on a capped link waits for the bytes queued before it:
    // deadlineMs must cover them (docs/network.md).
    // The clients in the test process read the bursts as fast as a busy
    // machine lets them: they may fall behind by more than the default 1
    // MiB without being slow consumers.
    const options = {
      registers: [register.address],
      deadlineMs: 10_000,
      args: ["--max-buffered-bytes", String(16 * 1024 * 1024)],
    };
    const [a, b, c] = await Promise.all([
      startNetService({ ...options, host: aHost, name: "a" }),
      startNetService({ ...options, host: bHost, name: "b", lanIp: pHost.ip }),
      startNetService({ ...options, host: cHost, name: "c" }),
    ]) as [NetService, NetService, NetService];
    children.push(a.child, b.child, c.child);
    assert.equal(b.info.rpcAddress, `${pHost.ip}:${HOST_PORTS.rpc}`);
    await eventually(
      "every service sees three members",
      () => allSeeMembers([a, b, c], 3),
      20_000,
    );
    const connect = async (service: NetService) => {
      const client = await StreamClient.connect(service.ws, { timed: TIMED });
      clients.push(client);
      return client;
    };
    const [a0, b0, c0] = [await connect(a), await connect(b), await connect(c)];
    // Warm up every link (connections, delivery ports).
    for (const [from, to] of [[a0, b0], [a0, c0], [b0, a0]] as const) {
      from.send(`c ${to.id} warm-up`);
      await to.take("warm-up", 15_000);
    }

    const figures: string[] = [];
    const measure = async (
      label: string,
      from: StreamClient,
      to: StreamClient,
      link: string,
    ) => {
      const took = summary(await latencies(from, to, `lat-${link}`));
      const rate = await throughput(from, to, `tp-${link}`);
      figures.push(
        `${label}: latency median ${took.median.toFixed(1)} ms, p95 ${
          took.p95.toFixed(1)
        } ms; ${BURST.count} x ${BURST.bytes / 1024} KiB at ${
          rate.toFixed(1)
        } MB/s`,
      );
      return took;
    };
    await measure("a -> c, plain veth", a0, c0, "ac");
    const viaProxy = await measure(
      `a -> b, through the ${DELAY_MS} ms proxy`,
      a0,
      b0,
      "ab",
    );
    await measure("b -> a, direct (b dials a)", b0, a0, "ba");
    await cHost.limit({ kbit: CAP_KBIT });
    await measure(
      `a -> c, capped at ${CAP_KBIT / 1000} Mbit/s (tbf)`,
      a0,
      c0,
      "ac-capped",
    );
    await cHost.unlimit();
    console.log(`slow links:\n  ${figures.join("\n  ")}`);
    assert.ok(
      viaProxy.median >= DELAY_MS * 0.9,
      `a's messages to b went through the proxy (median ${viaProxy.median} ms)`,
    );
    for (const service of [a, b, c]) {
      assert.doesNotMatch(service.child.stderr, /ERROR|Uncaught/);
    }
  } finally {
    await Promise.all(children.map((child) => child.stop("SIGKILL")));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(clients.map((client) => client.close())),
      new Promise((resolve) => timer = setTimeout(resolve, 3000)),
    ]);
    clearTimeout(timer);
  }
});
