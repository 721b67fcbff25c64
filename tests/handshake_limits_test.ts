// What a service lets in: messages up to maxMessageBytes (larger ones close
// the client with 1009), browser origins from allowedOrigins, and whatever
// the application's onHandshake accepts, with its initial info.

import assert from "node:assert/strict";
import { type Application, type Message, startService } from "../mod.ts";
import { RawClient, TestClient } from "./helpers/clients.ts";
import {
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { captureLogs } from "./helpers/logs.ts";
import { eventually, settles } from "./helpers/waits.ts";

/** Records messages and closes, greets every client with its id. */
function recordingApp(events: string[], received: Message[]): Application {
  return {
    async onConnect(clientId, { api }) {
      await api.sendToClient(clientId, `id:${clientId}`);
    },
    onMessage(_clientId, message) {
      received.push(message);
    },
    onClose(clientId) {
      events.push(`close ${clientId}`);
    },
  };
}

Deno.test("maxMessageBytes closes a client that sends more with 1009", async (t) => {
  await using register = await startLocalRegister();
  const events: string[] = [];
  const received: Message[] = [];
  const base = localServiceOptions(register.address);

  await t.step("the default limit is 1 MiB", async () => {
    await using service = await startService(
      recordingApp(events, received),
      base,
    );
    await using client = await TestClient.connect(service.port);
    client.socket.send(new Uint8Array(1024 * 1024));
    await eventually("1 MiB arrives", () => received.length === 1);
    client.socket.send(new Uint8Array(1024 * 1024 + 1));
    const event = await settles("the client is closed", client.closed);
    assert.equal(event.code, 1009);
    assert.equal(event.reason, "message too big: the limit is 1048576 bytes");
    await eventually(
      "onClose ran",
      () => events.includes(`close ${client.id}`),
    );
    assert.equal(received.length, 1);
    assert.equal(await service.api.isOnline(client.id), false);
    received.length = 0;
  });

  await t.step("text counts in UTF-8 bytes, binary in bytes", async () => {
    await using service = await startService(
      recordingApp(events, received),
      { ...base, maxMessageBytes: 1000 },
    );
    await using ascii = await TestClient.connect(service.port);
    ascii.socket.send("a".repeat(1000));
    ascii.socket.send(new Uint8Array(1000));
    ascii.socket.send("é".repeat(500)); // 1000 bytes
    ascii.socket.send("😀".repeat(250)); // 1000 bytes, 500 UTF-16 units
    await eventually("four messages arrive", () => received.length === 4);

    await using accents = await TestClient.connect(service.port);
    accents.socket.send("é".repeat(501)); // 1002 bytes in 501 units
    assert.equal((await settles("closed", accents.closed)).code, 1009);
    await using bytes = await TestClient.connect(service.port);
    bytes.socket.send(new Uint8Array(1001));
    assert.equal((await settles("closed", bytes.closed)).code, 1009);
    await eventually(
      "both got onClose",
      () =>
        events.includes(`close ${accents.id}`) &&
        events.includes(`close ${bytes.id}`),
    );
    // The large messages were not delivered; the other client is
    // unaffected.
    assert.equal(received.length, 4);
    ascii.socket.send("still fine");
    await eventually(
      "the other client still talks",
      () => received.length === 5,
    );
    assert.equal(received[4], "still fine");
  });

  await t.step("a bad limit is refused at start", async () => {
    await assert.rejects(
      startService({}, { ...base, maxMessageBytes: 0 }),
      RangeError,
    );
  });
});

Deno.test("allowedOrigins refuses foreign browser origins with 403", async () => {
  await using register = await startLocalRegister();
  const asked: string[] = [];
  await using service = await startService(
    {
      onHandshake(request) {
        asked.push(request.headers.get("origin") ?? "none");
      },
    },
    localServiceOptions(register.address, {
      allowedOrigins: ["https://app.example", "http://localhost:8000"],
    }),
  );
  await assert.rejects(
    RawClient.connect(service.port, "/", { origin: "https://evil.example" }),
    /HTTP\/1.1 403/,
  );
  await assert.rejects(
    RawClient.connect(service.port, "/", {
      origin: "https://app.example:8443",
    }),
    /HTTP\/1.1 403/,
  );
  (await RawClient.connect(service.port, "/", {
    origin: "https://app.example",
  })).close();
  (await RawClient.connect(service.port, "/", {
    origin: "http://localhost:8000",
  })).close();
  // Not a browser: no Origin header, not affected.
  (await RawClient.connect(service.port, "/")).close();
  // The refused ones never reached the handshake hook.
  assert.deepEqual(asked, [
    "https://app.example",
    "http://localhost:8000",
    "none",
  ]);
  for (const bad of [["https://app.example/"], ["app.example"], ["*"]]) {
    await assert.rejects(
      startService({}, {
        register: register.address,
        allowedOrigins: bad,
      }),
      TypeError,
    );
  }
});

Deno.test("Application.onHandshake() refuses with a Response or accepts with info", async (t) => {
  await using register = await startLocalRegister();
  const connected: string[] = [];
  const infoAtConnect = new Map<string, unknown>();
  const app: Application = {
    async onHandshake(request, { api, remoteAddr }) {
      const params = new URL(request.url).searchParams;
      await new Promise((resolve) => setTimeout(resolve, 10)); // async is fine
      switch (params.get("mode")) {
        case "refuse":
          return new Response("no token\n", {
            status: 401,
            headers: { "www-authenticate": "Bearer" },
          });
        case "throw":
          throw new Error("the hook failed on purpose");
        case "bad-info":
          return { info: { n: 1 as unknown as string } };
        case "nothing":
          return;
        default:
          assert.equal(remoteAddr.hostname, "127.0.0.1");
          assert.equal(typeof (await api.getAllClientCount()), "number");
          return {
            info: { user: params.get("user") ?? "", via: "handshake" },
          };
      }
    },
    async onConnect(clientId, { api }) {
      connected.push(clientId);
      infoAtConnect.set(clientId, await api.getInfo(clientId));
      await api.sendToClient(clientId, `id:${clientId}`);
    },
  };
  await using service = await startService(
    app,
    localServiceOptions(register.address, { logLevel: "error" }),
  );

  await t.step("a Response refuses before any WebSocket exists", async () => {
    await assert.rejects(
      RawClient.connect(service.port, "/?mode=refuse"),
      (error: Error) =>
        error.message.startsWith("HTTP/1.1 401") &&
        /^www-authenticate: Bearer$/im.test(error.message),
    );
    const socket = new WebSocket(
      `ws://127.0.0.1:${service.port}/?mode=refuse`,
    );
    const errored = new Promise<Event>((resolve) => socket.onerror = resolve);
    const closed = new Promise<CloseEvent>((resolve) =>
      socket.onclose = resolve
    );
    assert.equal((await settles("an error", errored)).type, "error");
    assert.equal((await settles("closed", closed)).wasClean, false);
    assert.deepEqual(connected, []);
    assert.equal(await service.api.getAllClientCount(), 0);
  });

  await t.step("a failing hook refuses with 500, and logs why", async () => {
    using logs = captureLogs(/ ERROR service \S+: onHandshake failed /);
    await assert.rejects(
      RawClient.connect(service.port, "/?mode=throw"),
      /HTTP\/1.1 500/,
    );
    await assert.rejects(
      RawClient.connect(service.port, "/?mode=bad-info"),
      /HTTP\/1.1 500/,
    );
    assert.deepEqual(connected, []);
    assert.equal(logs.lines.length, 2, logs.lines.join("\n"));
    assert.match(logs.lines[0]!, /error="Error: the hook failed on purpose/);
    assert.match(
      logs.lines[1]!,
      /error="GatewayError: Cannot accept a client with the info from onHandshake: info\[\\"n\\"\] is number, expected a string/,
    );
  });

  await t.step("accepted clients start with the hook's info", async () => {
    await using alice = await TestClient.connect(
      service.port,
      "/?user=alice",
    );
    await using plain = await TestClient.connect(
      service.port,
      "/?mode=nothing",
    );
    assert.deepEqual(infoAtConnect.get(alice.id), {
      user: "alice",
      via: "handshake",
    });
    assert.deepEqual(infoAtConnect.get(plain.id), {});
    assert.deepEqual(await service.api.getInfo(alice.id), {
      user: "alice",
      via: "handshake",
    });
  });
});
