// Services in one process share nothing: each logs with its own level and
// name, counts its own metrics, and reports its own unawaited failures.

import assert from "node:assert/strict";
import { TestClient } from "./helpers/clients.ts";
import { Child } from "./helpers/processes.ts";
import { scrape } from "./helpers/prometheus.ts";

Deno.test("two services in one process keep their logs and metrics apart", async () => {
  const child = await Child.start("tests/fixtures/two_services.ts", [], {
    captureStderr: true,
  });
  try {
    const ports = JSON.parse(child.first) as { a: number; b: number };
    await using atA = await TestClient.connect(ports.a);
    await using atB = await TestClient.connect(ports.b);
    await using _alsoAtB = await TestClient.connect(ports.b);
    // B makes an Api call that rejects, and nobody awaits it.
    atB.socket.send("!unawaited");
    assert.equal(await atB.next(), "unawaited");
    atA.socket.send("hello");
    assert.equal(await atA.next(), "echo:hello");

    const a = await scrape(`http://127.0.0.1:${ports.a}/metrics`);
    const b = await scrape(`http://127.0.0.1:${ports.b}/metrics`);
    assert.equal(a.value("wsgate_connections_opened_total"), 1);
    assert.equal(b.value("wsgate_connections_opened_total"), 2);
    assert.equal(a.value("wsgate_messages_received_total"), 1);
    assert.equal(b.value("wsgate_messages_received_total"), 1);
    assert.equal(
      a.value("wsgate_api_errors_total", { method: "sendToClient" }),
      0,
    );
    assert.equal(
      b.value("wsgate_api_errors_total", { method: "sendToClient" }),
      1,
    );
  } finally {
    const status = await child.stop("SIGTERM");
    assert.equal(status.code, 0, child.stderr);
  }
  const lines = child.stderr.trim().split("\n");
  const of = (name: string) =>
    lines.filter((l) => l.includes(` service ${name}: `));
  // A logs at debug: its clients' connects; B at warn: none of that.
  assert.ok(
    of("A").some((l) => / DEBUG .*client connected/.test(l)),
    child.stderr,
  );
  assert.ok(!of("B").some((l) => / (DEBUG|INFO) /.test(l)), child.stderr);
  // The unawaited failure is B's, reported by B's logger only.
  const unawaited = lines.filter((l) => l.includes("nobody awaited it"));
  assert.equal(unawaited.length, 1, child.stderr);
  assert.match(unawaited[0]!, / WARN {2}service B: /);
});
