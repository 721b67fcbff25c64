// Register faults: with two registers, killing one changes nothing; with
// no register at all, services keep their last-known members and the Api
// keeps working; when the register returns, every service re-joins and the
// member list is whole again (a service started meanwhile waits for it,
// accepting no client until it has joined).

import assert from "node:assert/strict";
import type { Api } from "../mod.ts";
import { GatewayService } from "../proto/gen/websocket/v1/gateway_pb.ts";
import { TestClient } from "./helpers/clients.ts";
import { startCaller } from "./helpers/local_cluster.ts";
import {
  startRegisterProcess,
  startServiceProcess,
} from "./helpers/processes.ts";
import { eventually } from "./helpers/waits.ts";
import {
  callMethod,
  clientCountVia,
  dial,
  registerMembers,
} from "./helpers/rpc.ts";

/** Sends to `to` through the service at `rpcAddress` (it forwards). */
async function sendVia(
  rpcAddress: string,
  to: TestClient,
  text: string,
): Promise<void> {
  using channel = dial(rpcAddress);
  await callMethod(channel.transport, GatewayService.method.sendToClient, [{
    clientId: to.id,
    payload: { body: { case: "text", value: text } },
  }]);
}

/** Whether the Api and each service at `rpcAddresses` count `n` clients. */
async function everyoneCounts(
  api: Api,
  rpcAddresses: string[],
  n: number,
): Promise<boolean> {
  if ((await api.getAllClientCount()) !== n) return false;
  for (const address of rpcAddresses) {
    if ((await clientCountVia(address)) !== n) return false;
  }
  return true;
}

/**
 * One round of checks that must pass whatever happens to registers: exact
 * counts from every service, a send to all that reaches everyone, and a
 * forwarded send between two services. Any IncompleteResultError fails it.
 */
async function everythingWorks(
  api: Api,
  clients: TestClient[],
  rpcAddresses: string[],
  round: string,
): Promise<void> {
  assert.equal(await api.getAllClientCount(), clients.length, round);
  assert.deepEqual(
    (await api.getAllClientIds()).sort(),
    clients.map((c) => c.id).sort(),
    round,
  );
  for (const address of rpcAddresses) {
    assert.equal(
      await clientCountVia(address),
      clients.length,
      `${round} ${address}`,
    );
  }
  await api.sendToAll(round);
  for (const client of clients) assert.equal(await client.next(), round);
  const [first, last] = [clients[0]!, clients.at(-1)!];
  await sendVia(rpcAddresses[0]!, last, `${round} forwarded`);
  assert.equal(await last.next(), `${round} forwarded`);
  await sendVia(rpcAddresses.at(-1)!, first, `${round} back`);
  assert.equal(await first.next(), `${round} back`);
}

Deno.test("with two registers, killing one changes nothing", async (t) => {
  const r1 = await startRegisterProcess();
  const r2 = await startRegisterProcess();
  const registers = `${r1.address},${r2.address}`;
  const s1 = await startServiceProcess(registers);
  const s2 = await startServiceProcess(registers);
  let s3: Awaited<ReturnType<typeof startServiceProcess>> | undefined;
  const clients: TestClient[] = [];
  try {
    await using caller = await startCaller([r1.address, r2.address]);
    const api = caller.api;
    clients.push(await TestClient.connect(s1.info.port));
    clients.push(await TestClient.connect(s2.info.port));
    const rpc = [s1.info.rpcAddress, s2.info.rpcAddress];
    await eventually(
      "every service sees both clients",
      () => everyoneCounts(api, rpc, 2),
    );

    await t.step(
      "register 1 is killed: every call still completes",
      async () => {
        await r1.child.stop("SIGKILL");
        // Long enough for every service to notice and retry register 1 a few
        // times (its backoff starts at 100 ms).
        for (let round = 0; round < 15; round++) {
          await everythingWorks(api, clients, rpc, `round ${round}`);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        for (const client of clients) {
          assert.equal(client.socket.readyState, WebSocket.OPEN);
        }
      },
    );

    await t.step("membership still changes through register 2", async () => {
      s3 = await startServiceProcess(registers);
      const c3 = await TestClient.connect(s3.info.port);
      clients.push(c3);
      rpc.push(s3.info.rpcAddress);
      await eventually(
        "every service sees the new service's client",
        () => everyoneCounts(api, [rpc[0]!, rpc[2]!], 3),
      );
      await everythingWorks(api, clients, rpc, "with s3");

      await s2.child.stop("SIGTERM");
      clients.splice(1, 1);
      rpc.splice(1, 1);
      await eventually(
        "every service forgets the stopped service",
        () => everyoneCounts(api, rpc, 2),
      );
      await everythingWorks(api, clients, rpc, "without s2");
    });
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await s3?.child.stop();
    await s1.child.stop();
    await s2.child.stop();
    await r2.child.stop();
    await r1.child.stop();
  }
});

Deno.test("through a register outage the cluster keeps working, then re-joins", async (t) => {
  let register = await startRegisterProcess();
  const port = register.address.split(":").at(-1)!;
  const s1 = await startServiceProcess(register.address);
  const s2 = await startServiceProcess(register.address);
  let s3: Awaited<ReturnType<typeof startServiceProcess>> | undefined;
  let s3Starting: ReturnType<typeof startServiceProcess> | undefined;
  const clients: TestClient[] = [];
  try {
    await using caller = await startCaller(register.address);
    const api = caller.api;
    clients.push(await TestClient.connect(s1.info.port));
    clients.push(await TestClient.connect(s2.info.port));
    const rpc = [s1.info.rpcAddress, s2.info.rpcAddress];
    await eventually(
      "every service sees both clients",
      () => everyoneCounts(api, rpc, 2),
    );

    await t.step("no register: last-known members, Api works", async () => {
      await register.child.stop("SIGKILL");
      for (let round = 0; round < 15; round++) {
        await everythingWorks(api, clients, rpc, `outage round ${round}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      for (const client of clients) {
        assert.equal(client.socket.readyState, WebSocket.OPEN);
      }
    });

    await t.step("a service started meanwhile waits to join", async () => {
      const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const s3Port = free.addr.port;
      free.close();
      s3Starting = startServiceProcess(register.address, [
        "--port",
        String(s3Port),
        "--join-timeout-ms",
        "60000",
      ]);
      const healthz = `http://127.0.0.1:${s3Port}/healthz`;
      await eventually("s3 listens and says it is starting", async () => {
        const response = await fetch(healthz);
        return response.status === 503 &&
          (await response.json()).status === "starting";
      });
      const upgrade = await fetch(`http://127.0.0.1:${s3Port}/`, {
        headers: {
          connection: "upgrade",
          upgrade: "websocket",
          "sec-websocket-version": "13",
          "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
      });
      await upgrade.body?.cancel();
      assert.equal(upgrade.status, 503, "s3 accepts no client before joining");
      assert.equal(await api.getAllClientCount(), 2);
    });

    await t.step("the register returns: the member list is whole", async () => {
      register = await startRegisterProcess(["--port", port]);
      const returned = Date.now();
      s3 = await s3Starting!;
      clients.push(await TestClient.connect(s3.info.port));
      const allRpc = [...rpc, s3!.info.rpcAddress];
      const seen = new Set<number>();
      let wholeAt = 0;
      await eventually("every service sees all three clients", async () => {
        const counts = await Promise.all([
          api.getAllClientCount(),
          ...allRpc.map((a) => clientCountVia(a)),
        ]);
        for (const count of counts.slice(0, 3)) seen.add(count);
        if (counts.every((c) => c === 3)) wholeAt ||= Date.now();
        return counts.every((c) => c === 3);
      }, 20_000);
      console.log(
        `measured: every service re-joined ${
          wholeAt - returned
        } ms after the register returned`,
      );
      // The old members never vanished while services re-joined.
      assert.deepEqual([...seen].sort(), seen.has(2) ? [2, 3] : [3]);
      await everythingWorks(api, clients, allRpc, "after the outage");
    });
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    // A service that never joined exits by itself after its join timeout.
    s3 ??= await s3Starting?.catch(() => undefined);
    await s3?.child.stop();
    await s1.child.stop();
    await s2.child.stop();
    await register.child.stop();
  }
});

Deno.test("a hung register is found by keepalive, and re-joined once it resumes", async () => {
  const register = await startRegisterProcess();
  const service = await startServiceProcess(register.address, [], {
    captureStderr: true,
  });
  try {
    const stopped = Date.now();
    register.child.signal("SIGSTOP");
    // The Join stream carries nothing but heartbeats; only the service's
    // HTTP/2 pings can tell that the register stopped answering.
    await eventually(
      "the service notices",
      () =>
        /lost register; retrying .*PING timed out/.test(service.child.stderr),
      20_000,
    );
    const noticed = Date.now() - stopped;
    const resumed = Date.now();
    register.child.signal("SIGCONT");
    await eventually(
      "the service is a member again",
      async () =>
        (await registerMembers(register.address)).includes(
          service.info.nodeId,
        ),
      20_000,
    );
    console.log(
      `measured: a hung register noticed by a service after ${noticed} ms; member again ${
        Date.now() - resumed
      } ms after it resumed`,
    );
  } finally {
    register.child.signal("SIGCONT");
    await service.child.stop();
    await register.child.stop();
  }
});
