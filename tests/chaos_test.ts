// Chaos under load: two registers and five services as processes on
// loopback. Two services ("stable") and the first register are never
// touched; a seeded random schedule SIGKILLs, freezes (SIGSTOP, later
// SIGCONT) and restarts the three others and the second register, while
// clients send to clients, uids and groups. Afterwards: the counts
// converge, nothing leaked (the uids and groups of killed services'
// clients are gone everywhere, no delivery waits for a peer), and every
// message between the two stable services arrived once, in order.
//
// WSGATE_CHAOS_SEED=<n> replays a schedule (the seed is printed);
// WSGATE_CHAOS_SECONDS=<n> makes the run longer (default 40).

import assert from "node:assert/strict";
import {
  allSeeMembers,
  callApi,
  membersOf,
  metricOf,
  type NetRegister,
  type NetService,
  startNetRegister,
  startNetService,
} from "./helpers/net_cluster.ts";
import type { Child } from "./helpers/processes.ts";
import { prng } from "./helpers/random.ts";
import { closeAll, Sender, StreamClient } from "./helpers/stream_client.ts";
import { eventually } from "./helpers/waits.ts";

const SECONDS = Number(Deno.env.get("WSGATE_CHAOS_SECONDS") ?? "40");
const PING_MS = 250;
const DEADLINE_MS = 1000;
/** Stable senders send one message this often. */
const SEND_EVERY_MS = 20;

/** A chaos service: one incarnation after another. */
interface Chaotic {
  readonly name: string;
  service: NetService | undefined;
  generation: number;
  frozenUntil: number | undefined;
  clients: StreamClient[];
  sender: Sender | undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Starts the second register again on its port (retried while it is busy). */
async function restartRegister(port: number): Promise<NetRegister> {
  for (let attempt = 1;; attempt++) {
    try {
      return await startNetRegister({ port, pingIntervalMs: PING_MS });
    } catch (error) {
      if (attempt === 5) throw error;
      await sleep(200);
    }
  }
}

Deno.test({
  name:
    "chaos: kills, freezes and restarts under load leave the stable services whole",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const seed = Number(
    Deno.env.get("WSGATE_CHAOS_SEED") ?? Date.now() % 2 ** 31,
  );
  console.log(
    `chaos seed ${seed} (WSGATE_CHAOS_SEED=${seed} replays it; WSGATE_CHAOS_SECONDS=${SECONDS})`,
  );
  const random = prng(seed);
  const pick = <T>(items: readonly T[]): T =>
    items[Math.floor(random() * items.length)]!;
  const between = (low: number, high: number) => low + random() * (high - low);

  const stopped: { stop(signal: Deno.Signal): Promise<unknown> }[] = [];
  /** Every process, by name, for its stderr when the test fails. */
  const processes: [string, Child][] = [];
  /** Processes the test killed: any other exit is a crash. */
  const killed = new Set<Child>();
  const crashes: string[] = [];
  const track = (name: string, child: Child) => {
    processes.push([name, child]);
    stopped.push(child);
    child.status.then((status) => {
      if (killed.has(child)) return;
      crashes.push(
        `${name} exited by itself (code ${status.code}, signal ${status.signal}): ${
          child.stderr.slice(-2000)
        }`,
      );
    });
  };
  /** SIGKILLs a process the test started, and waits for it. */
  const kill = async (child: Child) => {
    killed.add(child);
    await child.stop("SIGKILL");
  };
  const allClients: StreamClient[] = [];
  const chaotic: Chaotic[] = ["x1", "x2", "x3"].map((name) => ({
    name,
    service: undefined,
    generation: 0,
    frozenUntil: undefined,
    clients: [],
    sender: undefined,
  }));
  let r2: NetRegister | undefined;
  let r2Down: { until: number; frozen: boolean } | undefined;
  const stats = {
    kills: 0,
    registerKills: 0,
    freezes: 0,
    registerFreezes: 0,
    restarts: 0,
    refusedConnects: 0,
  };
  /** Clients, uids and groups of killed incarnations. */
  const gone = {
    clients: [] as StreamClient[],
    uids: new Set<string>(),
    groups: new Set<string>(),
  };
  try {
    const r1 = await startNetRegister({ pingIntervalMs: PING_MS });
    track("r1", r1.child);
    r2 = await startNetRegister({ pingIntervalMs: PING_MS });
    track("r2", r2.child);
    const registers = [r1.address, r2.address];
    const r2Port = r2.port;
    /** Thaws register r2, or starts it again on its port, if it is down. */
    const bringBackR2 = async () => {
      if (r2Down === undefined) return;
      if (r2Down.frozen) r2!.child.signal("SIGCONT");
      else {
        r2 = await restartRegister(r2Port);
        track("r2", r2.child);
        stats.restarts++;
      }
      r2Down = undefined;
    };
    const start = (name: string) =>
      startNetService({
        registers,
        name,
        pingIntervalMs: PING_MS,
        deadlineMs: DEADLINE_MS,
      });
    const [s1, s2] = await Promise.all([start("s1"), start("s2")]) as [
      NetService,
      NetService,
    ];
    track("s1", s1.child);
    track("s2", s2.child);

    // A client may be refused while a peer hangs (its onConnect, which
    // binds and joins, fails): it tries again.
    const connect = async (service: NetService, query: string) => {
      for (let attempt = 1;; attempt++) {
        try {
          const client = await StreamClient.connect(`${service.ws}?${query}`);
          allClients.push(client);
          return client;
        } catch (error) {
          if (attempt === 10) throw error;
          stats.refusedConnects++;
          await sleep(300);
        }
      }
    };
    // Stable clients: uid us<k>-<i>, groups all and s; s1c3 shares the
    // uid "shared" with a client of every chaos incarnation.
    const stableOn = async (service: NetService, k: number) => {
      const clients: StreamClient[] = [];
      for (let i = 0; i < 4; i++) {
        const uid = k === 1 && i === 3 ? "shared" : `us${k}-${i}`;
        clients.push(await connect(service, `uid=${uid}&group=all,s`));
      }
      return clients;
    };
    const [s1c, s2c] = [await stableOn(s1, 1), await stableOn(s2, 2)];
    const stable = [...s1c, ...s2c];

    /** Starts the next incarnation of a chaos service, with clients. */
    const bringUp = async (x: Chaotic) => {
      x.generation++;
      x.service = await start(x.name);
      track(`${x.name}-${x.generation}`, x.service.child);
      const tag = `${x.name}-${x.generation}`;
      x.clients = [
        await connect(x.service, `uid=shared&group=all,g${tag}`),
        await connect(x.service, `uid=u${tag}&group=all,g${tag}`),
      ];
      // Load from the chaos service towards the stable ones (not checked:
      // what was on its way when it died is lost).
      const target = s2c[1]!.id;
      x.sender = new Sender(
        x.clients[0]!,
        `${tag}`,
        (m) => random() < 0.5 ? `g all ${m}` : `c ${target} ${m}`,
      );
      x.sender.start(100);
    };
    for (const x of chaotic) await bringUp(x);

    const liveServices = () => [
      s1,
      s2,
      ...chaotic.flatMap((x) => x.service === undefined ? [] : [x.service]),
    ];
    await eventually(
      "every service sees five members",
      () => allSeeMembers(liveServices(), 5),
      30_000,
    );

    // The checked streams, between s1 and s2 only.
    const senders = [
      new Sender(s1c[0]!, "12c", (m) => `c ${s2c[0]!.id} ${m}`),
      new Sender(s1c[1]!, "12u", (m) => `u us2-1 ${m}`),
      new Sender(s1c[2]!, "1g", (m) => `g all ${m}`),
      new Sender(s2c[0]!, "21c", (m) => `c ${s1c[0]!.id} ${m}`),
      new Sender(s2c[1]!, "21u", (m) => `u shared ${m}`),
      new Sender(s2c[2]!, "2g", (m) => `g s ${m}`),
    ];
    for (const sender of senders) sender.start(SEND_EVERY_MS);

    // The schedule.
    const end = performance.now() + SECONDS * 1000;
    let next = performance.now() + between(1000, 2500);
    while (performance.now() < end) {
      if (crashes.length > 0) throw new Error(crashes.join("\n"));
      const now = performance.now();
      for (const x of chaotic) {
        if (x.frozenUntil !== undefined && now >= x.frozenUntil) {
          x.service!.child.signal("SIGCONT");
          x.frozenUntil = undefined;
        }
      }
      if (r2Down !== undefined && now >= r2Down.until) await bringBackR2();
      if (now >= next) {
        next = now + between(1000, 2500);
        const running = chaotic.filter((x) =>
          x.service !== undefined && x.frozenUntil === undefined
        );
        const dead = chaotic.filter((x) => x.service === undefined);
        const actions: (() => Promise<void>)[] = [];
        if (running.length > 0) {
          actions.push(async () => {
            const x = pick(running);
            await x.sender?.stop();
            await kill(x.service!.child);
            x.service = undefined;
            const tag = `${x.name}-${x.generation}`;
            gone.clients.push(...x.clients);
            gone.uids.add(`u${tag}`);
            gone.groups.add(`g${tag}`);
            stats.kills++;
          });
          actions.push(() => {
            const x = pick(running);
            x.service!.child.signal("SIGSTOP");
            x.frozenUntil = performance.now() + between(500, 3000);
            stats.freezes++;
            return Promise.resolve();
          });
        }
        if (dead.length > 0) {
          actions.push(async () => {
            await bringUp(pick(dead));
            stats.restarts++;
          });
        }
        if (r2Down === undefined) {
          actions.push(async () => {
            const frozen = random() < 0.5;
            if (frozen) {
              r2!.child.signal("SIGSTOP");
              stats.registerFreezes++;
            } else {
              await kill(r2!.child);
              stats.registerKills++;
            }
            r2Down = { until: performance.now() + between(1000, 4000), frozen };
          });
        }
        await pick(actions)();
      }
      await sleep(50);
    }

    // The end: thaw and bring back what is down, except killed services.
    for (const sender of senders) await sender.stop();
    for (const x of chaotic) {
      await x.sender?.stop();
      if (x.frozenUntil !== undefined) {
        x.service!.child.signal("SIGCONT");
        x.frozenUntil = undefined;
      }
    }
    await bringBackR2();
    const settledAt = performance.now();

    // Counts converge on the truth, and nothing of the killed is left.
    await eventually(
      "the clients of killed services see their connections closed",
      () => gone.clients.every((c) => !c.open),
    );
    const live = liveServices();
    const open = allClients.filter((c) => c.open);
    const liveUids = new Set(
      open.map((c) => new URL(c.url).searchParams.get("uid")!),
    );
    await eventually("counts converge", async () => {
      for (const service of live) {
        if (await membersOf(service) !== live.length) return false;
        if (await callApi(service, "getAllClientCount") !== open.length) {
          return false;
        }
        if (
          await callApi(service, "getClientCountByGroup", { group: "all" }) !==
            open.length
        ) return false;
        if (await callApi(service, "getAllUidCount") !== liveUids.size) {
          return false;
        }
      }
      return true;
    }, 30_000);
    const convergeMs = performance.now() - settledAt;
    // Every message between s1 and s2 arrived once, in order.
    const sent = Object.fromEntries(senders.map((s) => [s.stream, s.sent]));
    const expect: [StreamClient, string][] = [
      [s2c[0]!, "12c"],
      [s2c[1]!, "12u"],
      ...stable.map((c) => [c, "1g"] as [StreamClient, string]),
      [s1c[0]!, "21c"],
      [s1c[3]!, "21u"],
      ...stable.map((c) => [c, "2g"] as [StreamClient, string]),
    ];
    for (const [client, stream] of expect) {
      await client.until(
        `${sent[stream]} messages of ${stream} at ${client.id}`,
        () => client.log(stream).count >= sent[stream]!,
        30_000,
      );
    }
    let checked = 0;
    for (const [client, stream] of expect) {
      const log = client.log(stream);
      assert.deepEqual(log.breaks, [], `${stream} at ${client.id} in order`);
      assert.equal(log.count, sent[stream], `${stream} at ${client.id} once`);
      checked += log.count;
    }
    // From chaos services: gaps when one died, never a duplicate or a
    // step back.
    for (const client of stable) {
      for (const [stream, log] of client.streams) {
        assert.equal(
          log.duplicates,
          0,
          `${stream} at ${client.id}: duplicates`,
        );
        for (const text of log.breaks) {
          const [, got, after] = /got (\d+) after (\d+)/.exec(text)!;
          assert.ok(Number(got) > Number(after), `${stream}: ${text}`);
        }
      }
    }

    for (const service of [s1, s2]) {
      for (const uid of gone.uids) {
        assert.equal(
          await callApi(service, "isUidOnline", { uid }),
          false,
          `uid ${uid} of a killed service is offline`,
        );
      }
      for (const group of gone.groups) {
        assert.equal(
          await callApi(service, "getClientCountByGroup", { group }),
          0,
          `group ${group} of a killed service is empty`,
        );
      }
      const uids = await callApi(service, "getAllUids") as string[];
      assert.deepEqual(
        uids.filter((uid) => gone.uids.has(uid)),
        [],
        "no uid of a killed service is listed",
      );
    }
    await eventually("no delivery waits for a peer", async () => {
      for (const service of live) {
        if (await metricOf(service, "wsgate_peer_queued_bytes") !== 0) {
          return false;
        }
      }
      return true;
    }, 10_000);
    // Each service holds exactly its open clients' uids and groups.
    for (
      const [service, clients] of [
        [s1, s1c],
        [s2, s2c],
        ...chaotic.filter((x) => x.service !== undefined).map((x) =>
          [x.service!, x.clients] as const
        ),
      ] as const
    ) {
      const uids = new Set(
        clients.map((c) => new URL(c.url).searchParams.get("uid")),
      );
      const groups = new Set(
        clients.flatMap((c) =>
          new URL(c.url).searchParams.get("group")!.split(",")
        ),
      );
      assert.equal(await metricOf(service, "wsgate_uids"), uids.size);
      assert.equal(await metricOf(service, "wsgate_groups"), groups.size);
      assert.equal(
        await metricOf(service, "wsgate_connections"),
        clients.length,
      );
    }
    assert.deepEqual(crashes, [], "no process exited by itself");
    for (const service of [s1, s2]) {
      assert.doesNotMatch(service.child.stderr, /Uncaught/);
    }

    const total = senders.reduce((n, s) => n + s.sent, 0);
    console.log(
      `chaos seed ${seed}: ${SECONDS} s, kills ${stats.kills} services + ${stats.registerKills} register, freezes ${stats.freezes} services + ${stats.registerFreezes} register, ${stats.restarts} restarts, ${stats.refusedConnects} refused connects; ${total} messages sent between the stable services, ${checked} deliveries checked in ${expect.length} streams (once, in order); ${open.length} clients, counts converged ${
        convergeMs.toFixed(0)
      } ms after the last fault`,
    );
  } catch (error) {
    for (const [name, child] of processes) {
      if (child.stderr !== "") {
        console.log(
          `--- ${name} stderr (end) ---\n${child.stderr.slice(-3000)}`,
        );
      }
    }
    throw error;
  } finally {
    for (const x of chaotic) {
      await x.sender?.stop();
      if (x.frozenUntil !== undefined) x.service?.child.signal("SIGCONT");
    }
    if (r2Down?.frozen) r2?.child.signal("SIGCONT");
    for (const [, child] of processes) killed.add(child);
    await Promise.all(stopped.map((child) => child.stop("SIGKILL")));
    await closeAll(allClients);
  }
});
