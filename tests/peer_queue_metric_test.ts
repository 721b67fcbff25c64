// wsgate_peer_queued_bytes: what waits for peers. A send to a client of a
// hung peer (SIGSTOP) stays queued, and the gauge shows its bytes; once the
// peer resumes and acknowledges it, the gauge is back to 0. The chaos test
// (tests/chaos_test.ts) relies on it to show that no delivery is left
// waiting.

import assert from "node:assert/strict";
import { startService } from "../mod.ts";
import { TestClient } from "./helpers/clients.ts";
import {
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { startServiceProcess } from "./helpers/processes.ts";
import { scrape } from "./helpers/prometheus.ts";
import { eventually } from "./helpers/waits.ts";

Deno.test("wsgate_peer_queued_bytes shows deliveries that wait for a hung peer", async () => {
  await using register = await startLocalRegister({ logLevel: "error" });
  await using a = await startService(
    {},
    localServiceOptions(register.address, {
      logLevel: "error",
      deadlineMs: 10_000,
    }),
  );
  const { child, info } = await startServiceProcess(register.address, [
    "--log-level",
    "error",
  ]);
  await using b = child;
  await eventually(
    "a sees b",
    async () =>
      (await scrape(`http://127.0.0.1:${a.port}/metrics`))
        .value("wsgate_members") === 2,
  );
  await using client = await TestClient.connect(info.port);
  const queued = async () =>
    (await scrape(`http://127.0.0.1:${a.port}/metrics`)).value(
      "wsgate_peer_queued_bytes",
    );
  await a.api.sendToClient(client.id, "warm-up");
  assert.equal(await client.next(), "warm-up");
  assert.equal(await queued(), 0);

  b.signal("SIGSTOP");
  let sent: Promise<void>;
  try {
    sent = a.api.sendToClient(client.id, "x".repeat(1000));
    const waiting = await queued();
    assert.ok(waiting >= 1000, `${waiting} bytes wait for the hung peer`);
  } finally {
    b.signal("SIGCONT");
  }
  await sent;
  assert.equal(await client.next(), "x".repeat(1000));
  await eventually("nothing waits any more", async () => await queued() === 0);
});
