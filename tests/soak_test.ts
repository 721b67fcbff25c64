// Soak: about a minute of churn across three service processes while one of
// them restarts. Clients connect, bind a uid, join groups, get messages by
// clientId, uid and group, talk to their service, and leave in three ways.
// Residents stay connected throughout and get a tick every 50 ms. At the
// end every index is empty cluster-wide, every client is accounted for
// (every message it should have got arrived, or it was on the restarted
// service and was cut off with 1001), and the services' memory did not grow
// beyond a stated bound.
//
// WSGATE_SOAK_SECONDS sets the length of the churn (default 45).

import assert from "node:assert/strict";
import { IncompleteResultError, type Message } from "../mod.ts";
import { TestClient } from "./helpers/clients.ts";
import { startCaller } from "./helpers/local_cluster.ts";
import {
  openFdsOf,
  rssOf,
  startLabService,
  startRegisterProcess,
} from "./helpers/processes.ts";
import { eventually, settles } from "./helpers/waits.ts";

const SECONDS = Number(Deno.env.get("WSGATE_SOAK_SECONDS") ?? 45);
const WORKERS = 6;
const MiB = 1024 * 1024;
/**
 * The bounds, between a surviving service warmed up (a quarter into the
 * churn, and after WARM_CLIENTS clients at least) and the same service at
 * the end with every client gone:
 * - its JavaScript heap in use after a full garbage collection grows by at
 *   most HEAP_BOUND (a leak of 1 KiB per client would exceed it);
 * - it has at most FD_SLACK more file descriptors open (every socket of
 *   every client is released);
 * - its RSS grows by at most RSS_BOUND. V8 sizes its heap up as clients
 *   churn, to a plateau (a plain Deno WebSocket server's RSS grows by about
 *   36 MiB over its first 6,000 clients, then stays flat): the warm-up lets
 *   the services reach it. Measured over the default 45 s: +7 MiB.
 */
const HEAP_BOUND = 4 * MiB;
const FD_SLACK = 8;
const RSS_BOUND = 32 * MiB;
const WARM_CLIENTS = 1500;

interface Memory {
  rss: number;
  heapUsed: number;
  fds: number;
}

/** A lab service's memory and open descriptors, after a full GC. */
async function measure(lab: Lab): Promise<Memory> {
  await using client = await TestClient.connect(lab.info.port);
  client.socket.send("!mem");
  const usage = JSON.parse(String(await client.next())) as Deno.MemoryUsage;
  return {
    rss: await rssOf(lab.child.pid),
    heapUsed: usage.heapUsed,
    fds: await openFdsOf(lab.child.pid),
  };
}

/** Starts a lab service whose "!mem" collects garbage first. */
function startGcLab(register: string): Promise<Lab> {
  return startLabService(register, [], {
    denoFlags: ["--v8-flags=--expose-gc"],
  });
}

type Lab = Awaited<ReturnType<typeof startLabService>>;

interface Tally {
  /** Clients that connected. */
  connected: number;
  /** Clients whose whole script ran and got every message. */
  completed: number;
  /** Clients on the restarted service that it cut off (closed with 1001). */
  cut: number;
  /** Connection attempts the restarting service refused. */
  refused: number;
  /** Anything else: each one fails the test. */
  failures: string[];
}

Deno.test({
  name:
    "soak: churn across three services while one restarts leaves nothing behind",
  async fn() {
    const register = await startRegisterProcess();
    const labs: Lab[] = [];
    const allLabs: Lab[] = [];
    for (let i = 0; i < 3; i++) {
      const lab = await startGcLab(register.address);
      labs.push(lab);
      allLabs.push(lab);
    }
    try {
      await using caller = await startCaller(register.address);
      const api = caller.api;
      const tally: Tally = {
        connected: 0,
        completed: 0,
        cut: 0,
        refused: 0,
        failures: [],
      };
      /** The node id of the service being restarted, while it is. */
      let restarting: string | undefined;
      const restartedAddress = labs[2]!.info.rpcAddress;
      const restartedLab = labs[2]!;
      const start = Date.now();
      const end = start + SECONDS * 1000;

      /** The next message that is not noise from the shared rooms. */
      const next = async (client: TestClient): Promise<Message> => {
        while (true) {
          const message = await client.next();
          if (message !== "noise") return message;
        }
      };

      /** Sends that fan out may miss a service that is going away. */
      /** Sends that fan out may miss the service that restarts, only. */
      const fanOut = async (send: Promise<void>): Promise<void> => {
        try {
          await send;
        } catch (error) {
          if (
            !(error instanceof IncompleteResultError) ||
            error.failures.some((f) => f.address !== restartedAddress)
          ) throw error;
        }
      };

      const iteration = async (worker: number, k: number): Promise<void> => {
        const lab = labs[Math.floor(Math.random() * labs.length)]!;
        const nodeId = lab.info.nodeId;
        let client: TestClient;
        try {
          client = await TestClient.connect(lab.info.port);
        } catch (error) {
          if (restarting === nodeId || !labs.includes(lab)) {
            tally.refused++;
            return;
          }
          throw error;
        }
        tally.connected++;
        const uid = `user-${worker}-${k}`;
        const group = `group-${worker}-${k}`;
        const room = `room-${k % 4}`;
        try {
          await api.bindUid(client.id, uid);
          await api.joinGroup(client.id, group);
          await api.joinGroup(client.id, room);
          await api.sendToClient(client.id, "by id");
          await fanOut(api.sendToUid(uid, "by uid"));
          await fanOut(api.sendToGroup(group, "by group"));
          if (k % 5 === 0) await fanOut(api.sendToGroup(room, "noise"));
          client.socket.send(`hello ${k}`);
          assert.deepEqual(
            [await next(client), await next(client), await next(client)],
            ["by id", "by uid", "by group"],
          );
          assert.equal(await next(client), `echo:hello ${k}`);
          switch (k % 3) {
            case 0:
              await client.close();
              break;
            case 1:
              await api.closeClient(client.id, "bye");
              assert.equal(await next(client), "bye");
              assert.equal(
                (await settles("closed", client.closed)).code,
                1000,
              );
              break;
            case 2:
              await api.leaveGroup(client.id, room);
              await api.unbindUid(client.id);
              await client.close();
              break;
          }
          tally.completed++;
        } catch (error) {
          // A service going away may refuse a call before it cuts its
          // clients off: wait for its 1001 instead of closing first.
          if (restarting === nodeId || lab === restartedLab) {
            const closed = await settles("closed", client.closed, 30_000)
              .catch(() => undefined);
            if (closed?.code === 1001) {
              tally.cut++;
              return;
            }
          }
          await client.close();
          throw error;
        }
      };

      const worker = async (w: number): Promise<void> => {
        for (let k = 0; Date.now() < end; k++) {
          try {
            await iteration(w, k);
          } catch (error) {
            tally.failures.push(
              `worker ${w} iteration ${k}: ${
                error instanceof Error ? error.stack : String(error)
              }`,
            );
            if (tally.failures.length > 5) return;
          }
        }
      };

      /**
       * Residents stay connected through the churn, in group "residents",
       * and must get every tick sent while they are connected, in order.
       */
      interface Resident {
        client: TestClient;
        nodeId: string;
        /** The first tick sent after it joined. */
        from: number;
      }
      const residents: Resident[] = [];
      let ticks = 0;
      const addResidents = async (lab: Lab): Promise<void> => {
        for (let i = 0; i < 2; i++) {
          const client = await TestClient.connect(lab.info.port);
          await api.joinGroup(client.id, "residents");
          residents.push({ client, nodeId: lab.info.nodeId, from: ticks });
          tally.connected++;
        }
      };
      const tick = async (): Promise<void> => {
        while (Date.now() < end) {
          try {
            await fanOut(api.sendToGroup("residents", `tick ${ticks++}`));
          } catch (error) {
            tally.failures.push(`tick ${ticks - 1}: ${error}`);
          }
          await sleep(50);
        }
      };
      for (const lab of labs) await addResidents(lab);

      const restartOne = async (): Promise<void> => {
        await sleep(SECONDS * 400);
        const old = labs[2]!;
        restarting = old.info.nodeId;
        labs.splice(2, 1);
        const status = await old.child.stop("SIGTERM");
        assert.equal(status.code, 0);
        const fresh = await startGcLab(register.address);
        allLabs.push(fresh);
        // The caller must know the new service before clients use it.
        await using probe = await TestClient.connect(fresh.info.port);
        await eventually(
          "the caller sees the new service",
          () => api.isOnline(probe.id),
        );
        labs.push(fresh);
        restarting = undefined;
        await addResidents(fresh);
      };

      let warm: Memory[] = [];
      /** A quarter into the churn, and after WARM_CLIENTS clients at least. */
      const measureWarm = async (): Promise<void> => {
        await sleep(SECONDS * 250);
        while (tally.connected < WARM_CLIENTS && Date.now() < end) {
          await sleep(100);
        }
        warm = await Promise.all(allLabs.slice(0, 2).map(measure));
      };

      await Promise.all([
        ...Array.from({ length: WORKERS }, (_, w) => worker(w)),
        restartOne(),
        measureWarm(),
        tick(),
      ]);
      assert.deepEqual(tally.failures, []);

      // Residents: every tick sent while they were connected arrived, in
      // order; those on the restarted service were cut off with 1001.
      for (const { client, nodeId, from } of residents) {
        // A tick already on its way when the resident joined may arrive too.
        const check = (got: Message[], last: number) => {
          const first = Number(String(got[0]).split(" ")[1]);
          assert.ok(
            first <= from,
            `${client.id}: first tick ${first} > ${from}`,
          );
          assert.deepEqual(
            got,
            Array.from(
              { length: last - first + 1 },
              (_, i) => `tick ${first + i}`,
            ),
            client.id,
          );
        };
        if (nodeId === allLabs[2]!.info.nodeId) {
          assert.equal((await settles("cut", client.closed)).code, 1001);
          const got = client.pending.slice();
          assert.ok(got.length > 0);
          check(got, Number(String(got.at(-1)).split(" ")[1]));
          tally.cut++;
        } else {
          const got: Message[] = [];
          // (A resident that joined after the last tick expects none.)
          while (from < ticks && got.at(-1) !== `tick ${ticks - 1}`) {
            try {
              got.push(await client.next());
            } catch (error) {
              throw new Error(
                `resident ${client.id} (from tick ${from}, open: ${
                  client.socket.readyState === WebSocket.OPEN
                }) got ${got.length}: ${got.slice(0, 2)} ... ${
                  got.slice(-2)
                }; the last tick was ${ticks - 1}`,
                { cause: error },
              );
            }
          }
          if (from < ticks) check(got, ticks - 1);
          assert.deepEqual(client.pending, []);
          await client.close();
          tally.completed++;
        }
      }

      // Every index is empty, on every service of the cluster.
      await eventually(
        "the cluster is empty",
        async () =>
          (await api.getAllClientCount()) === 0 &&
          (await api.getAllUidCount()) === 0 &&
          (await api.getAllGroups()).length === 0,
      );
      assert.deepEqual(await api.getAllClientIds(), []);
      assert.deepEqual(await api.getAllClientInfos(), {});

      // Every client is accounted for.
      assert.equal(tally.completed + tally.cut, tally.connected);
      assert.ok(tally.completed > 100 * SECONDS / 45, JSON.stringify(tally));

      // Memory: the surviving services are back near their warm size.
      const after = await Promise.all(allLabs.slice(0, 2).map(measure));
      const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;
      console.log(
        `soak ${SECONDS}s: ${JSON.stringify(tally)}\n` +
          after.map((m, i) => {
            const w = warm[i]!;
            return `  service ${i}: rss ${mib(w.rss)} -> ${mib(m.rss)}, ` +
              `heap used ${mib(w.heapUsed)} -> ${mib(m.heapUsed)}, ` +
              `fds ${w.fds} -> ${m.fds}`;
          }).join("\n"),
      );
      after.forEach((m, i) => {
        const w = warm[i]!;
        assert.ok(
          m.heapUsed - w.heapUsed < HEAP_BOUND,
          `service ${i}: heap grew by ${mib(m.heapUsed - w.heapUsed)}`,
        );
        assert.ok(m.fds - w.fds <= FD_SLACK, `service ${i}: fds ${m.fds}`);
        assert.ok(
          m.rss - w.rss < RSS_BOUND,
          `service ${i}: RSS grew by ${mib(m.rss - w.rss)}`,
        );
      });
    } finally {
      for (const lab of allLabs) await lab.child.stop("SIGKILL");
      await register.child.stop();
    }
  },
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
