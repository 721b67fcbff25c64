// Dead and hung peers: a service killed with SIGKILL is dropped by the
// register and its peers; one stopped with SIGSTOP is found by keepalive
// pings and dropped too, and comes back after SIGCONT. Meanwhile no Api
// call waits on it longer than the deadline: sends reach everyone else,
// queries answer from the rest, and the caller can tell (IncompleteResultError).
//
// The test prints the detection and recovery times it sees ("measured:").

import assert from "node:assert/strict";
import { GatewayError, IncompleteResultError, type Service } from "../mod.ts";
import { TestClient } from "./helpers/clients.ts";
import { startCaller } from "./helpers/local_cluster.ts";
import {
  startRegisterProcess,
  startServiceProcess,
} from "./helpers/processes.ts";
import { eventually, untilClientCount } from "./helpers/waits.ts";
import { registerMembers } from "./helpers/rpc.ts";

const DEADLINE_MS = 2000;

/**
 * A call to a hung peer settles by the deadline; this much later, it is
 * taken to wait past it (the machine may be busy, so not at the very ms).
 */
const DEADLINE_SLACK_MS = DEADLINE_MS / 2;

/**
 * Resolves with how the promise settled and how long it took; fails the
 * test when it has not settled within the deadline and its slack.
 */
async function settle<T>(
  promise: Promise<T>,
  what: string,
): Promise<{ ms: number; value?: T; error?: unknown }> {
  const start = Date.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<never>((_, reject) => {
    const limit = DEADLINE_MS + DEADLINE_SLACK_MS;
    timer = setTimeout(
      () =>
        reject(
          new Error(`${what} still waits after ${limit} ms: past the deadline`),
        ),
      limit,
    );
  });
  try {
    const value = await Promise.race([promise, hung]);
    return { ms: Date.now() - start, value };
  } catch (error) {
    if (error instanceof Error && error.message.includes("still waits")) {
      throw error;
    }
    return { ms: Date.now() - start, error };
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until `check` holds and returns how long that took from `since`. */
async function timeUntil(
  what: string,
  since: number,
  check: () => Promise<boolean>,
): Promise<number> {
  await eventually(what, check, 20_000);
  return Date.now() - since;
}

/**
 * Whether a call failed only because of the peer at `address`, and (when
 * given) with that code.
 */
function failedOnlyAt(
  error: unknown,
  address: string,
  code?: GatewayError["code"],
): boolean {
  return error instanceof IncompleteResultError &&
    error.failures.length === 1 && error.failures[0]!.address === address &&
    (code === undefined || error.failures[0]!.error.code === code);
}

Deno.test("dead and hung peers are dropped, and no call waits on them", async (t) => {
  const register = await startRegisterProcess();
  const [s1, s2, s3] = await Promise.all(
    [0, 1, 2].map(() => startServiceProcess(register.address)),
  ) as [
    Awaited<ReturnType<typeof startServiceProcess>>,
    Awaited<ReturnType<typeof startServiceProcess>>,
    Awaited<ReturnType<typeof startServiceProcess>>,
  ];
  const clients: TestClient[] = [];
  let caller: Service | undefined;
  try {
    caller = await startCaller(register.address, {
      deadlineMs: DEADLINE_MS,
      // Its own keepalive would notice a hung peer only after 10 s: what
      // ends calls to it before that is the deadline.
      pingIntervalMs: 5000,
    });
    const api = caller.api;
    const c1 = await TestClient.connect(s1.info.port);
    const c2 = await TestClient.connect(s2.info.port);
    const c3 = await TestClient.connect(s3.info.port);
    clients.push(c1, c2, c3);
    await untilClientCount(api, 3, "the caller sees three clients");

    await t.step(
      "a killed peer is dropped by the register and the peers",
      async () => {
        const killed = Date.now();
        s3.child.signal("SIGKILL");
        // Right away, calls either complete or name only the dead peer.
        const count = await settle(api.getAllClientCount(), "count");
        assert.ok(
          count.error === undefined ||
            failedOnlyAt(count.error, s3.info.rpcAddress),
          String(count.error),
        );
        const byRegister = await timeUntil(
          "the register drops s3",
          killed,
          async () =>
            !(await registerMembers(register.address)).includes(s3.info.nodeId),
        );
        const byPeers = await timeUntil(
          "the caller forgets s3",
          killed,
          async () => (await api.getAllClientCount()) === 2,
        );
        console.log(
          `measured: SIGKILL detected by the register after ${byRegister} ms, by peers after ${byPeers} ms`,
        );
        await s3.child.stop("SIGKILL");
        clients.pop();
        assert.deepEqual(
          (await api.getAllClientIds()).sort(),
          [c1.id, c2.id].sort(),
        );
        await api.sendToAll("after kill");
        assert.equal(await c1.next(), "after kill");
        assert.equal(await c2.next(), "after kill");
      },
    );

    await t.step(
      "a hung peer costs at most the deadline, then is dropped",
      async () => {
        // A group that only s2 holds: with holder routing, a send to a
        // group nobody holds would not wait for anyone.
        await api.joinGroup(c2.id, "on-s2");
        const stopped = Date.now();
        s2.child.signal("SIGSTOP");
        const hungAt = s2.info.rpcAddress;
        const [count, ids, all, toGroup, one, online, info] = await Promise.all(
          [
            settle(api.getAllClientCount(), "getAllClientCount"),
            settle(api.getAllClientIds(), "getAllClientIds"),
            settle(api.sendToAll("while hung"), "sendToAll"),
            settle(api.sendToGroup("on-s2", "x"), "sendToGroup"),
            settle(api.sendToClient(c2.id, "to the hung one"), "sendToClient"),
            settle(api.isOnline(c2.id), "isOnline"),
            settle(api.getInfo(c2.id), "getInfo"),
          ],
        );
        // Queries answer from the rest and say they are incomplete, because
        // the hung peer missed the deadline.
        const late = "deadline_exceeded";
        assert.ok(failedOnlyAt(count.error, hungAt, late), String(count.error));
        assert.equal((count.error as IncompleteResultError<number>).partial, 1);
        assert.ok(failedOnlyAt(ids.error, hungAt, late), String(ids.error));
        assert.deepEqual((ids.error as IncompleteResultError).partial, [c1.id]);
        // Sends reach everyone else and say who they missed.
        assert.ok(failedOnlyAt(all.error, hungAt, late), String(all.error));
        assert.ok(
          failedOnlyAt(toGroup.error, hungAt, late),
          String(toGroup.error),
        );
        assert.equal(await c1.next(), "while hung");
        // Calls about one client of the hung peer fail the same way.
        for (const single of [one, online, info]) {
          assert.ok(
            single.error instanceof GatewayError && single.error.code === late,
            String(single.error),
          );
        }
        const waits = [count, ids, all, toGroup, one, online, info].map((r) =>
          r.ms
        );
        console.log(
          `measured: calls to a hung peer settled after ${Math.min(...waits)}-${
            Math.max(...waits)
          } ms (deadline ${DEADLINE_MS} ms)`,
        );

        const byRegister = await timeUntil(
          "the register drops the hung s2",
          stopped,
          async () =>
            !(await registerMembers(register.address)).includes(s2.info.nodeId),
        );
        const byPeers = await timeUntil(
          "the caller forgets the hung s2",
          stopped,
          async () => {
            try {
              return (await api.getAllClientCount()) === 1;
            } catch {
              return false;
            }
          },
        );
        console.log(
          `measured: SIGSTOP detected by the register after ${byRegister} ms, by peers after ${byPeers} ms`,
        );
        // Once dropped, calls are complete again and do not wait.
        assert.deepEqual(await api.getAllClientIds(), [c1.id]);
        await api.sendToAll("without s2");
        assert.equal(await c1.next(), "without s2");

        const resumed = Date.now();
        s2.child.signal("SIGCONT");
        const back = await timeUntil(
          "s2 re-joins after SIGCONT",
          resumed,
          async () => (await api.getAllClientCount()) === 2,
        );
        console.log(`measured: a resumed peer re-joined after ${back} ms`);
        // Its client stayed connected and is reachable again. What was sent
        // to it while it hung may or may not have arrived (at most once).
        await api.sendToClient(c2.id, "welcome back");
        let got;
        do got = await c2.next(); while (got !== "welcome back");
      },
    );
  } finally {
    s2.child.signal("SIGCONT");
    await caller?.close();
    await Promise.all(clients.map((c) => c.close()));
    await s1.child.stop();
    await s2.child.stop();
    await s3.child.stop("SIGKILL");
    await register.child.stop();
  }
});
