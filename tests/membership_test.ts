// Membership: services join through the register, and when one stops or
// dies the register drops it and the others forget it.

import assert from "node:assert/strict";
import { TestClient } from "./helpers/clients.ts";
import { startCaller } from "./helpers/local_cluster.ts";
import {
  startRegisterProcess,
  startServiceProcess,
} from "./helpers/processes.ts";
import { untilClientCount } from "./helpers/waits.ts";

Deno.test("services forget a peer that stops or dies", async (t) => {
  const register = await startRegisterProcess();
  const s1 = await startServiceProcess(register.address);
  const s2 = await startServiceProcess(register.address);
  const clients: TestClient[] = [];
  try {
    await using caller = await startCaller(register.address);
    const api = caller.api;
    const c1 = await TestClient.connect(s1.info.port);
    const c2 = await TestClient.connect(s2.info.port);
    clients.push(c1, c2);
    await untilClientCount(api, 2, "both clients are seen");

    await t.step(
      "a killed service is dropped by the register and its peers",
      async () => {
        await s2.child.stop("SIGKILL");
        // Once the register has told the caller, calls no longer try s2: they
        // answer completely (no IncompleteResultError) and without it.
        await untilClientCount(api, 1, "s2 is forgotten");
        assert.deepEqual(await api.getAllClientIds(), [c1.id]);
        assert.equal(await api.isOnline(c2.id), false);
        await api.sendToClient(c2.id, "into the void"); // a no-op, no error
      },
    );

    await t.step("a restarted service hands out fresh clientIds", async () => {
      const s3 = await startServiceProcess(register.address);
      try {
        assert.notEqual(s3.info.nodeId, s2.info.nodeId);
        const c3 = await TestClient.connect(s3.info.port);
        clients.push(c3);
        assert.ok(!c3.id.startsWith(s2.info.nodeId));
        await untilClientCount(api, 2, "s3 is seen");
        await api.sendToClient(c3.id, "welcome");
        assert.equal(await c3.next(), "welcome");
      } finally {
        await s3.child.stop();
      }
      await untilClientCount(api, 1, "s3 is forgotten after a graceful stop");
    });

    await t.step(
      "a gracefully stopped service closes its clients with 1001",
      async () => {
        const status = await s1.child.stop("SIGTERM");
        assert.equal(status.code, 0);
        assert.equal((await c1.closed).code, 1001);
        await untilClientCount(api, 0, "s1 is forgotten");
        assert.equal(await api.isOnline(c1.id), false);
      },
    );
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await s1.child.stop();
    await s2.child.stop();
    await register.child.stop();
  }
});
