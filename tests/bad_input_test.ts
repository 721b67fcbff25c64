// Bad input to the Api: every public method answers it with a GatewayError
// whose code is "invalid_argument", does nothing, and loses nothing: the
// good calls around it all take effect, in order.

import assert from "node:assert/strict";
import { type Api, GatewayError, type Message, startService } from "../mod.ts";
import { TestClient } from "./helpers/clients.ts";
import {
  greeter,
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";

const MiB = 1024 * 1024;

function isInvalid(pattern: RegExp) {
  return (error: unknown) =>
    error instanceof GatewayError && error.code === "invalid_argument" &&
    pattern.test(error.message);
}

/** Calls `api` with anything, as JavaScript callers can. */
function loose(
  api: Api,
): Record<string, (...args: unknown[]) => Promise<unknown>> {
  return api as unknown as Record<
    string,
    (...args: unknown[]) => Promise<unknown>
  >;
}

Deno.test("Api rejects bad input with invalid_argument and loses nothing", async (t) => {
  await using register = await startLocalRegister();
  const options = localServiceOptions(register.address);
  await using holder = await startService(greeter, options);
  // The caller holds no clients: its calls about the client cross to the
  // holder over the delivery stream and RPC.
  await using caller = await startService({}, options);
  await using client = await TestClient.connect(holder.port);
  const id = client.id;
  for (const api of [holder.api, caller.api]) {
    await api.bindUid(id, "alice");
    await api.joinGroup(id, "red");
  }
  await holder.api.setInfo(id, { name: "Alice" });

  for (
    const [where, api] of [["local", holder.api], [
      "remote",
      caller.api,
    ]] as const
  ) {
    const call = loose(api);
    /** Good sends between the bad calls: all must arrive, in order. */
    const sent: Message[] = [];
    let n = 0;
    const good = async (): Promise<void> => {
      const message = `${where} ${n++}`;
      sent.push(message);
      await api.sendToClient(id, message);
    };

    await t.step(`${where}: oversized payloads`, async () => {
      const bytes = new Uint8Array(MiB + 1);
      const text = "é".repeat(MiB / 2) + "x"; // 1 MiB + 1 in UTF-8
      for (const big of [bytes, text]) {
        await assert.rejects(
          api.sendToClient(id, big),
          isInvalid(
            /^Cannot send to client: message is 1048577 bytes, more than the limit of 1048576 \(maxSendBytes\)$/,
          ),
        );
        await good();
        await assert.rejects(api.sendToAll(big), isInvalid(/maxSendBytes/));
        await assert.rejects(
          api.sendToUid("alice", big),
          isInvalid(/maxSendBytes/),
        );
        await assert.rejects(
          api.sendToGroup("red", big),
          isInvalid(/maxSendBytes/),
        );
        await assert.rejects(
          api.closeClient(id, big),
          isInvalid(/maxSendBytes/),
        );
        await good();
      }
      // The limit itself is fine.
      await api.sendToClient(id, new Uint8Array(MiB));
      sent.push(new Uint8Array(MiB));
    });

    await t.step(
      `${where}: messages that are not strings or bytes`,
      async () => {
        for (
          const bad of [42, null, undefined, { text: "hi" }, new ArrayBuffer(2)]
        ) {
          await assert.rejects(
            call.sendToClient!(id, bad),
            isInvalid(/expected a string or a Uint8Array/),
          );
          await assert.rejects(call.sendToAll!(bad), isInvalid(/message is/));
          await good();
        }
      },
    );

    await t.step(`${where}: empty or overlong uids and groups`, async () => {
      const long = "u".repeat(256);
      for (const bad of ["", long, 7, null]) {
        await assert.rejects(
          call.bindUid!(id, bad),
          isInvalid(/^Cannot bind uid: uid /),
        );
        await assert.rejects(call.sendToUid!(bad, "x"), isInvalid(/uid/));
        await assert.rejects(
          call.sendToUid!(["alice", bad], "x"),
          isInvalid(/uid/),
        );
        await assert.rejects(call.isUidOnline!(bad), isInvalid(/uid/));
        await assert.rejects(call.getClientIdsByUid!(bad), isInvalid(/uid/));
        await assert.rejects(
          call.joinGroup!(id, bad),
          isInvalid(/^Cannot join group: group /),
        );
        await assert.rejects(call.leaveGroup!(id, bad), isInvalid(/group/));
        await assert.rejects(call.sendToGroup!(bad, "x"), isInvalid(/group/));
        await assert.rejects(
          call.sendToGroup!(["red", bad], "x"),
          isInvalid(/group/),
        );
        await assert.rejects(call.ungroup!(bad), isInvalid(/group/));
        await assert.rejects(
          call.getClientCountByGroup!(bad),
          isInvalid(/group/),
        );
        await assert.rejects(
          call.getClientIdsByGroup!(bad),
          isInvalid(/group/),
        );
        await assert.rejects(call.getUidsByGroup!(bad), isInvalid(/group/));
        await assert.rejects(
          call.getClientInfosByGroup!(bad),
          isInvalid(/group/),
        );
        await good();
      }
      // A name of 255 bytes is fine.
      await api.sendToUid("u".repeat(255), "nobody has it");
    });

    await t.step(`${where}: info values that are not strings`, async () => {
      for (
        const bad of [
          { n: 1 },
          { ok: "yes", no: null },
          { nested: {} },
          null,
          "text",
          ["a"],
        ]
      ) {
        await assert.rejects(
          call.setInfo!(id, bad),
          isInvalid(/^Cannot set info: info/),
        );
        await assert.rejects(
          call.updateInfo!(id, bad),
          isInvalid(/^Cannot update info: info/),
        );
        await good();
      }
    });

    await t.step(`${where}: bad exclude lists`, async () => {
      for (const bad of [id, [1], [null], { ids: [id] }, ["not a client id"]]) {
        await assert.rejects(
          call.sendToAll!("x", { exclude: bad }),
          isInvalid(/options.exclude|clientId/),
        );
        await assert.rejects(
          call.sendToGroup!("red", "x", { exclude: bad }),
          isInvalid(/options.exclude|clientId/),
        );
        await good();
      }
    });

    await t.step(`${where}: malformed clientIds`, async () => {
      for (const bad of ["", "nope", `${id}!`, 12, null]) {
        await assert.rejects(
          call.sendToClient!(bad, "x"),
          isInvalid(/clientId/),
        );
        await assert.rejects(
          call.bindUid!(bad, "alice"),
          isInvalid(/clientId/),
        );
        await assert.rejects(call.setInfo!(bad, {}), isInvalid(/clientId/));
        await assert.rejects(call.getInfo!(bad), isInvalid(/clientId/));
        await assert.rejects(call.closeClient!(bad), isInvalid(/clientId/));
        await good();
      }
    });

    await t.step(`${where}: nothing was lost or changed`, async () => {
      assert.deepEqual(await client.take(sent.length), sent);
      assert.deepEqual(client.pending, []);
      assert.equal(await api.getUidByClientId(id), "alice");
      assert.deepEqual(await api.getAllGroups(), ["red"]);
      assert.deepEqual(await api.getInfo(id), { name: "Alice" });
      assert.equal(await api.getAllClientCount(), 1);
    });
  }
});

Deno.test("maxSendBytes sets the limit of outgoing messages", async () => {
  await using register = await startLocalRegister();
  const options = localServiceOptions(register.address);
  await using service = await startService({}, {
    ...options,
    maxSendBytes: 10,
  });
  await service.api.sendToAll("0123456789");
  await assert.rejects(
    service.api.sendToAll("0123456789a"),
    isInvalid(/message is 11 bytes, more than the limit of 10/),
  );
  await assert.rejects(
    startService({}, { ...options, maxSendBytes: 0 }),
    RangeError,
  );
});
