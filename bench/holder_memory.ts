// What holder routing costs (docs/holder_routing.md): a register and two
// service processes (bench/holder_app.ts), one client on each. The client
// on the holder joins N single-member groups; the script prints the heap
// of both services before and after (after a full GC), how long the joins
// took, and the latency of sequential joins with and without holder
// routing.
//
//   deno run -A bench/holder_memory.ts [--groups 1000000] [--seq 2000]
//     [--peers 1]   services besides the holder (the first is measured)

import { parseArgs } from "node:util";
import { TestClient } from "../tests/helpers/clients.ts";
import {
  Child,
  parseReadyLine,
  serviceArgs,
  startRegisterProcess,
} from "../tests/helpers/processes.ts";
import { scrape } from "../tests/helpers/prometheus.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    groups: { type: "string", default: "1000000" },
    seq: { type: "string", default: "2000" },
    peers: { type: "string", default: "1" },
  },
});
const groups = Number(values.groups);
const seq = Number(values.seq);
const peerCount = Number(values.peers);

async function startHolderService(register: string, routing: "on" | "off") {
  const child = await Child.start(
    "service.ts",
    serviceArgs("bench/holder_app.ts", register, [
      "--holder-routing",
      routing,
    ]),
    { denoFlags: ["--v8-flags=--expose-gc,--max-old-space-size=4096"] },
  );
  return { child, info: parseReadyLine(child.first) };
}

async function ask(client: TestClient, command: string, timeoutMs = 600_000) {
  client.socket.send(command);
  return String(await client.next(timeoutMs));
}

async function heapMiB(client: TestClient): Promise<number> {
  const mem = JSON.parse(await ask(client, "mem"));
  return mem.heapUsed / 1024 / 1024;
}

async function run(routing: "on" | "off") {
  const register = await startRegisterProcess();
  const holder = await startHolderService(register.address, routing);
  const peer = await startHolderService(register.address, routing);
  const more = await Promise.all(
    Array.from(
      { length: peerCount - 1 },
      () => startHolderService(register.address, routing),
    ),
  );
  try {
    const onHolder = await TestClient.connect(holder.info.port);
    const onPeer = await TestClient.connect(peer.info.port);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const seqAnswer = await ask(onHolder, `seq ${seq} s`);
    const seqMs = Number(seqAnswer.split(" ")[1]);
    console.log(
      `holder routing ${routing}, ${peerCount} peers: ${seq} sequential joins on the holder, ${
        (seqMs / seq * 1000).toFixed(0)
      } µs each`,
    );
    if (routing === "off" && groups > 0) {
      const before = await heapMiB(onHolder);
      const joined = await ask(onHolder, `join ${groups} g`);
      const after = await heapMiB(onHolder);
      console.log(
        `${groups} single-member groups joined in ${
          joined.split(" ")[1]
        } ms; holder heap ${before.toFixed(1)} -> ${after.toFixed(1)} MiB`,
      );
    }
    if (routing === "on" && groups > 0) {
      const before = [await heapMiB(onHolder), await heapMiB(onPeer)];
      const batchesBefore = (await scrape(
        `http://127.0.0.1:${holder.info.port}/metrics`,
      )).value("wsgate_peer_batches_total", { via: "delivery_port" });
      const joined = await ask(onHolder, `join ${groups} g`);
      const metricsUrl = `http://127.0.0.1:${peer.info.port}/metrics`;
      const deadline = Date.now() + 600_000;
      while (
        (await scrape(metricsUrl)).value("wsgate_holder_index_names") <
          groups + seq && Date.now() < deadline
      ) await new Promise((resolve) => setTimeout(resolve, 200));
      const after = [await heapMiB(onHolder), await heapMiB(onPeer)];
      const batchesAfter = (await scrape(
        `http://127.0.0.1:${holder.info.port}/metrics`,
      )).value("wsgate_peer_batches_total", { via: "delivery_port" });
      const perEntry = (mib: number) => (mib * 1024 * 1024 / groups).toFixed(0);
      console.log(
        `${groups} single-member groups joined in ${joined.split(" ")[1]} ms, ${
          batchesAfter - batchesBefore
        } batches to the peer`,
      );
      console.log(
        `holder heap ${before[0]!.toFixed(1)} -> ${after[0]!.toFixed(1)} MiB (${
          perEntry(after[0]! - before[0]!)
        } B per group, hub included)`,
      );
      console.log(
        `peer heap ${before[1]!.toFixed(1)} -> ${after[1]!.toFixed(1)} MiB (${
          perEntry(after[1]! - before[1]!)
        } B per index entry)`,
      );
      // A service that joins now gets the holder's snapshot.
      const joinedAt = performance.now();
      const late = await startHolderService(register.address, routing);
      try {
        const lateUrl = `http://127.0.0.1:${late.info.port}/metrics`;
        while (
          (await scrape(lateUrl)).value("wsgate_holder_index_names") <
            groups + seq && performance.now() - joinedAt < 600_000
        ) await new Promise((resolve) => setTimeout(resolve, 100));
        console.log(
          `a service started now had the holder's snapshot (${
            groups + seq
          } names) ${
            (performance.now() - joinedAt).toFixed(0)
          } ms after it was started (process start included)`,
        );
      } finally {
        await late.child.stop();
      }
    }
    await onHolder.close();
    await onPeer.close();
  } finally {
    await holder.child.stop();
    await peer.child.stop();
    for (const other of more) await other.child.stop();
    await register.child.stop();
  }
}

await run("off");
await run("on");
