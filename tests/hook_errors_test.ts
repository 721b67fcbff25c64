// A hook that throws or rejects is logged and changes nothing else: the
// service keeps running, the client itself and the others keep being
// served. An Api call that rejects without being awaited does not crash the
// process either.

import assert from "node:assert/strict";
import { TestClient } from "./helpers/clients.ts";
import { startLabService, startRegisterProcess } from "./helpers/processes.ts";
import { eventually } from "./helpers/waits.ts";

Deno.test("a throwing or rejecting hook is logged and affects nothing else", async (t) => {
  const register = await startRegisterProcess();
  const service = await startLabService(register.address, [], {
    captureStderr: true,
  });
  const port = service.info.port;
  try {
    await using bystander = await TestClient.connect(port, "/?group=all");

    await t.step("onMessage throws, then rejects", async () => {
      await using client = await TestClient.connect(port);
      client.socket.send("!throw");
      client.socket.send("!reject");
      client.socket.send("after");
      assert.equal(await client.next(), "echo:after");
      await eventually(
        "both failures are logged",
        () =>
          service.child.stderr.includes(
            `onMessage failed clientId=${client.id} error="Error: onMessage threw for ${client.id} on purpose`,
          ) &&
          service.child.stderr.includes(
            `onMessage failed clientId=${client.id} error="Error: onMessage rejected for ${client.id} on purpose`,
          ),
      );
    });

    await t.step("onConnect rejects: the client is still served", async () => {
      await using client = await TestClient.connect(port, "/?throw=connect");
      client.socket.send("hello");
      assert.equal(await client.next(), "echo:hello");
      await eventually(
        "the failure is logged",
        () =>
          service.child.stderr.includes(
            `ERROR service ${service.info.nodeId}: onConnect failed clientId=${client.id}`,
          ),
      );
    });

    await t.step("onClose throws: the client is cleaned up", async () => {
      const client = await TestClient.connect(port, "/?uid=x&throw=close");
      await client.close();
      await eventually(
        "the failure is logged",
        () =>
          service.child.stderr.includes(
            `onClose failed clientId=${client.id} error="Error: onClose failed for ${client.id} on purpose`,
          ),
      );
      bystander.socket.send("!count all");
      assert.equal(await bystander.next(), "count:1");
    });

    await t.step("the others never noticed", async () => {
      bystander.socket.send("ping");
      assert.equal(await bystander.next(), "echo:ping");
      assert.deepEqual(bystander.pending, []);
      assert.equal(bystander.socket.readyState, WebSocket.OPEN);
    });

    await t.step("the service is alive and exits cleanly", async () => {
      const status = await service.child.stop("SIGTERM");
      assert.equal(status.code, 0);
      assert.doesNotMatch(service.child.stderr, /Uncaught/);
    });
  } finally {
    await service.child.stop("SIGKILL");
    await register.child.stop();
  }
});

Deno.test("an Api call that rejects unawaited does not crash the service", async () => {
  const register = await startRegisterProcess();
  const service = await startLabService(register.address, [], {
    captureStderr: true,
  });
  try {
    await using client = await TestClient.connect(service.info.port);
    for (let i = 0; i < 3; i++) {
      client.socket.send("!unawaited");
      assert.equal(await client.next(), "unawaited");
    }
    // Still alive and serving, and it said what happened.
    client.socket.send("ping");
    assert.equal(await client.next(), "echo:ping");
    await eventually(
      "the failure is logged",
      () =>
        service.child.stderr.includes(
          "WARN  service " + service.info.nodeId +
            ": an Api call failed and nobody awaited it",
        ),
    );
  } finally {
    await service.child.stop("SIGKILL");
    await register.child.stop();
  }
});
