// Heartbeat: a client that stops answering (a raw socket that never reads
// or pongs, a client process stopped with SIGSTOP) is closed and cleaned up:
// onClose runs once, it leaves its uid and groups. A live client that is
// just as idle stays connected.

import assert from "node:assert/strict";
import { type Application, startService } from "../mod.ts";
import { SERVICE_DEFAULTS } from "../internal/service/service_options.ts";
import { RawClient, TestClient } from "./helpers/clients.ts";
import {
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { Child } from "./helpers/processes.ts";
import { eventually } from "./helpers/waits.ts";

/** Binds `?uid=` and joins `?group=` from the URL, greets with the id. */
function recordingApp(closed: string[]): Application {
  return {
    onHandshake(request) {
      const params = new URL(request.url).searchParams;
      return {
        info: {
          uid: params.get("uid") ?? "",
          group: params.get("group") ?? "",
        },
      };
    },
    async onConnect(clientId, { api }) {
      const info = await api.getInfo(clientId);
      if (info?.uid) await api.bindUid(clientId, info.uid);
      for (const group of info?.group?.split(",").filter(Boolean) ?? []) {
        await api.joinGroup(clientId, group);
      }
      await api.sendToClient(clientId, `id:${clientId}`);
    },
    onClose(clientId) {
      closed.push(clientId);
    },
  };
}

Deno.test("idleTimeoutMs closes clients that stop answering and cleans them up", async (t) => {
  await using register = await startLocalRegister();
  const closed: string[] = [];
  await using service = await startService(
    recordingApp(closed),
    localServiceOptions(register.address, { idleTimeoutMs: 600 }),
  );
  const api = service.api;
  await using live = await TestClient.connect(service.port, "/?group=live");

  await t.step("a raw socket that never reads nor pongs", async () => {
    await using _raw = await RawClient.connect(
      service.port,
      "/?uid=mute&group=g1,g2",
    );
    let rawId = "";
    await eventually("the raw client is bound", async () => {
      [rawId = ""] = await api.getClientIdsByUid("mute");
      return rawId !== "";
    });
    assert.equal(await api.getClientCountByGroup("g2"), 1);
    await eventually(
      "the silent client is closed",
      () => closed.includes(rawId),
    );
    assert.equal(await api.isOnline(rawId), false);
    assert.equal(await api.isUidOnline("mute"), false);
    assert.equal(await api.getClientCountByGroup("g1"), 0);
    assert.equal(await api.getClientCountByGroup("g2"), 0);
    assert.deepEqual(await api.getAllGroups(), ["live"]);
    assert.equal(closed.filter((id) => id === rawId).length, 1);
  });

  await t.step("a client process stopped with SIGSTOP", async () => {
    const child = await Child.start("tests/fixtures/ws_client.ts", [
      `ws://127.0.0.1:${service.port}/?uid=frozen&group=g3`,
    ]);
    try {
      const id = child.first.replace(/^id:/, "");
      assert.equal(await api.isUidOnline("frozen"), true);
      Deno.kill(child.pid, "SIGSTOP");
      await eventually(
        "the frozen client is closed",
        () => closed.includes(id),
      );
      assert.equal(await api.isOnline(id), false);
      assert.equal(await api.isUidOnline("frozen"), false);
      assert.equal(await api.getClientCountByGroup("g3"), 0);
    } finally {
      await child.stop("SIGKILL");
    }
  });

  await t.step("a live client idle just as long stays connected", async () => {
    assert.ok(!closed.includes(live.id));
    assert.equal(await api.isOnline(live.id), true);
    await api.sendToGroup("live", "still here");
    assert.equal(await live.next(), "still here");
    assert.equal(await api.getAllClientCount(), 1);
  });
});

Deno.test("idleTimeoutMs 0 turns the heartbeat off; a negative value is refused", async () => {
  await using register = await startLocalRegister();
  await assert.rejects(
    startService({}, {
      register: register.address,
      idleTimeoutMs: -1,
    }),
    RangeError,
  );
  // A client silent for longer than the default heartbeat's first ping
  // (half of 30 s) is never pinged nor closed when the heartbeat is off;
  // beside it, a service with a heartbeat of 400 ms closes its own.
  const closedOff: string[] = [];
  const closedOn: string[] = [];
  const options = localServiceOptions(register.address);
  await using off = await startService(recordingApp(closedOff), {
    ...options,
    idleTimeoutMs: 0,
  });
  await using on = await startService(recordingApp(closedOn), {
    ...options,
    idleTimeoutMs: 400,
  });
  await using a = await RawClient.connect(off.port, "/?uid=a");
  await using _b = await RawClient.connect(on.port, "/?uid=b");
  await eventually(
    "both are bound",
    async () =>
      (await off.api.isUidOnline("a")) && (await on.api.isUidOnline("b")),
  );
  await eventually("b is closed", () => closedOn.length === 1);
  const greeting = await a.nextFrame();
  assert.equal(greeting?.opcode, 0x1, "the id greeting");
  const quietMs = SERVICE_DEFAULTS.idleTimeoutMs / 2 + 1000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const next = await Promise.race([
    a.nextFrame(),
    new Promise<"quiet">((resolve) =>
      timer = setTimeout(resolve, quietMs, "quiet")
    ),
  ]);
  clearTimeout(timer);
  assert.equal(next, "quiet", `a frame arrived: ${JSON.stringify(next)}`);
  assert.equal(await off.api.isUidOnline("a"), true);
  assert.deepEqual(closedOff, []);
});
