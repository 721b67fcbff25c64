// The delivery port: batches between services move from the gRPC Deliver
// stream to a plain TCP (or TLS) connection once the peer names its port,
// keeping their order; the port refuses strangers (a hello without the node
// proof of the gRPC channel to the same service), garbage and oversized
// batches with a status; `deliveryPort: false` and mutual TLS keep every
// batch on gRPC.

import assert from "node:assert/strict";
import { GatewayError, startService, type TlsOptions } from "../mod.ts";
import { PORT_MESSAGE, writeU32 } from "../internal/delivery/wire.ts";
import { encodeHello } from "../internal/delivery/port_sender.ts";
import { DeliveryEncoder } from "../internal/delivery/codec.ts";
import { openRpcChannel } from "../internal/grpc/rpc_channel.ts";
import {
  callerProof,
  formatNodeToken,
  nodeTokenOf,
  parseNodeToken,
  peerBinding,
} from "../internal/base/node_proof.ts";

const encoder = new DeliveryEncoder();
import { concat, TestClient } from "./helpers/clients.ts";
import {
  greeter,
  localServiceOptions,
  startCaller,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { eventually, untilClientCount } from "./helpers/waits.ts";
import { makeCertificates } from "./helpers/rpc.ts";
import { scrape } from "./helpers/prometheus.ts";

/** Batches a service wrote to peers, by the way they went. */
async function batchesOf(
  port: number,
): Promise<{ grpc: number; deliveryPort: number }> {
  const m = await scrape(`http://127.0.0.1:${port}/metrics`);
  return {
    grpc: m.value("wsgate_peer_batches_total", { via: "grpc" }),
    deliveryPort: m.value("wsgate_peer_batches_total", {
      via: "delivery_port",
    }),
  };
}

/**
 * What a delivery port answers to `bytes`, up to the end of the stream or
 * for 2 s at most.
 */
async function answerTo(
  port: number,
  bytes: Uint8Array,
  connect: () => Promise<Deno.Conn> = () =>
    Deno.connect({ hostname: "127.0.0.1", port }),
): Promise<{ ready: boolean; error?: { code: number; message: string } }> {
  const conn = await connect();
  const timer = setTimeout(() => conn.close(), 2000);
  try {
    await conn.write(bytes);
    const chunks: number[] = [];
    const buffer = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) break;
      chunks.push(...buffer.subarray(0, n));
    }
    const ready = chunks[0] === PORT_MESSAGE.READY;
    const rest = ready ? chunks.slice(1) : chunks;
    if (rest[0] !== PORT_MESSAGE.ERROR) return { ready };
    const length = rest[2]! << 8 | rest[3]!;
    return {
      ready,
      error: {
        code: rest[1]!,
        message: new TextDecoder().decode(
          new Uint8Array(rest.slice(4, 4 + length)),
        ),
      },
    };
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Closed already.
    }
  }
}

/**
 * The node proof (`nonce.proof`) that a service with `secret` sends to the
 * service at `address`: the one its gRPC channel there carries.
 */
async function tokenFor(address: string, secret: string): Promise<string> {
  const channel = openRpcChannel(address, {
    secret,
    pingIntervalMs: 1000,
    pingTimeoutMs: 2000,
  });
  try {
    return nodeTokenOf((await channel.authorization())!)!;
  } finally {
    channel.close();
  }
}

/** A batch frame: its length, then `packed`. */
function batch(packed: Uint8Array, length = packed.length): Uint8Array {
  const frame = new Uint8Array(4 + packed.length);
  writeU32(frame, 0, length);
  frame.set(packed, 4);
  return frame;
}

Deno.test("deliveries move to the peer's delivery port and keep their order", async () => {
  const secret = "s3cret";
  await using register = await startLocalRegister({ secret });
  await using target = await startService(
    greeter,
    // Room for the bursts below, which the client reads as they come.
    localServiceOptions(register.address, {
      secret,
      maxBufferedBytes: 64 * 1024 * 1024,
    }),
  );
  await using caller = await startCaller(register.address, { secret });
  await using client = await TestClient.connect(target.port);
  await untilClientCount(caller.api, 1, "the caller sees the client");
  assert.equal(typeof target.deliveryPort, "number");

  // One at a time: each its own batch, so some go before the move, some
  // after it.
  const sent: (string | Uint8Array)[] = [];
  for (let i = 0; i < 300; i++) {
    const message = i % 3 === 0 ? new Uint8Array([i & 0xff, i >> 8]) : `m${i}`;
    sent.push(message);
    await caller.api.sendToClient(client.id, message);
  }
  assert.deepEqual(await client.take(sent.length), sent);
  const batches = await batchesOf(caller.port);
  assert.ok(batches.grpc >= 1, `gRPC batches: ${batches.grpc}`);
  assert.ok(
    batches.deliveryPort >= 250,
    `delivery port batches: ${batches.deliveryPort} of 300`,
  );

  // A second caller moves over while sends never stop: bursts of 200, one
  // per timer tick, none awaited, so that batches are always in flight.
  await using busy = await startCaller(register.address, { secret });
  await untilClientCount(busy.api, 1, "the second caller sees the client");
  const burst: string[] = [];
  const pending: Promise<void>[] = [];
  const padding = "x".repeat(1000);
  for (let tick = 0; tick < 50; tick++) {
    for (let i = 0; i < 200; i++) {
      const message = `b${tick}.${i} ${padding}`;
      burst.push(message);
      pending.push(busy.api.sendToClient(client.id, message));
    }
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  await Promise.all(pending);
  assert.deepEqual(await client.take(burst.length), burst);
  const moved = await batchesOf(busy.port);
  assert.ok(moved.deliveryPort > 0, JSON.stringify(moved));
});

Deno.test("the delivery port refuses strangers, garbage and oversized batches", async (t) => {
  const secret = "s3cret";
  await using register = await startLocalRegister({ secret });
  await using target = await startService(
    greeter,
    localServiceOptions(register.address, { secret, pingIntervalMs: 100 }),
  );
  await using caller = await startCaller(register.address, { secret });
  await using client = await TestClient.connect(target.port);
  await untilClientCount(caller.api, 1, "the caller sees the client");
  const port = target.deliveryPort!;
  const intrusion = batch(encoder.toClient(client.id, "intruder").slice());

  const token = await tokenFor(target.rpcAddress, secret);

  await t.step(
    "no proof, the secret itself, a wrong proof, a proof for another address: UNAUTHENTICATED, nothing applied",
    async () => {
      const { nonce, proof } = parseNodeToken(token)!;
      const forOther = formatNodeToken({
        nonce,
        proof: callerProof(secret, nonce, peerBinding("127.0.0.1:1")),
      });
      const wrong = formatNodeToken({
        nonce,
        proof: callerProof("guess", nonce, peerBinding(target.rpcAddress)),
      });
      // A nonce this service never made: one character of its random part
      // changed.
      const other = nonce[20] === "B" ? "C" : "B";
      const forged = formatNodeToken({
        nonce: `${nonce.slice(0, 20)}${other}${nonce.slice(21)}`,
        proof,
      });
      for (
        const [hello, message] of [
          [encodeHello(undefined), /^Missing node proof/],
          [encodeHello(secret), /^Malformed node proof/],
          [encodeHello(wrong), /^Wrong node proof/],
          [encodeHello(forOther), /^Wrong node proof/],
          [encodeHello(forged), /^Unknown nonce/],
        ] as const
      ) {
        const answer = await answerTo(port, concat(hello, intrusion));
        assert.equal(answer.ready, false);
        assert.equal(answer.error?.code, 16);
        assert.match(answer.error!.message, message);
      }
      await caller.api.sendToClient(client.id, "marker");
      assert.equal(await client.next(), "marker");
    },
  );

  await t.step("a hello of version 1 is told to upgrade", async () => {
    const old = encodeHello(secret);
    old[4] = 1;
    const answer = await answerTo(port, old);
    assert.equal(answer.error?.code, 3);
    assert.match(answer.error!.message, /version 1.*upgrade the peer/);
  });

  await t.step("not a delivery connection: INVALID_ARGUMENT", async () => {
    const answer = await answerTo(
      port,
      new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"),
    );
    assert.equal(answer.error?.code, 3);
    assert.match(answer.error!.message, /not a delivery connection/);
  });

  await t.step(
    "a malformed batch: INVALID_ARGUMENT, none of it applied",
    async () => {
      const answer = await answerTo(
        port,
        concat(
          encodeHello(token),
          batch(
            concat(
              encoder.toClient(client.id, "half").slice(),
              Uint8Array.of(9),
            ),
          ),
        ),
      );
      assert.equal(answer.ready, true);
      assert.equal(answer.error?.code, 3);
      assert.match(answer.error!.message, /delivery kind 9 is unknown/);
    },
  );

  await t.step(
    "an oversized batch: RESOURCE_EXHAUSTED before it is read",
    async () => {
      const answer = await answerTo(
        port,
        concat(encodeHello(token), batch(new Uint8Array(0), 0x7fffffff)),
      );
      assert.equal(answer.error?.code, 8);
      assert.match(answer.error!.message, /larger than the limit/);
    },
  );

  await t.step(
    "a connection that says nothing is dropped by the service",
    async () => {
      // The hello timeout is 2 × pingIntervalMs = 200 ms; this side waits 25
      // times as long before it would give up on its own.
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const end = await Promise.race([
        conn.read(new Uint8Array(16)).then(
          (n) => n === null ? "closed by the service" : `${n} bytes`,
          () => "closed by the service",
        ),
        new Promise<string>((resolve) =>
          timer = setTimeout(resolve, 5000, "still open")
        ),
      ]);
      clearTimeout(timer);
      conn.close();
      assert.equal(end, "closed by the service");
    },
  );

  await t.step("a good batch still arrives", async () => {
    const answer = await answerTo(
      port,
      concat(
        encodeHello(token),
        batch(encoder.toClient(client.id, "good").slice()),
      ),
      async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        // Hang up once the acknowledgement is in.
        setTimeout(() => conn.closeWrite().catch(() => {}), 200);
        return conn;
      },
    );
    assert.equal(answer.ready, true);
    assert.equal(await client.next(), "good");
    assert.equal(client.pending.length, 0);
  });
});

/**
 * Forwards TCP connections from `listen` to `target` until closed: here,
 * the only way in to a service, as a port mapping of a container would be.
 */
function tcpProxy(
  listen: Deno.ListenOptions,
  target: Deno.ConnectOptions,
): AsyncDisposable {
  const listener = Deno.listen(listen);
  const conns = new Set<Deno.Conn>();
  const pipes: Promise<unknown>[] = [];
  const accepting = (async () => {
    for await (const inbound of listener) {
      const outbound = await Deno.connect(target);
      conns.add(inbound).add(outbound);
      pipes.push(
        inbound.readable.pipeTo(outbound.writable).catch(() => {}),
        outbound.readable.pipeTo(inbound.writable).catch(() => {}),
      );
    }
  })().catch(() => {});
  return {
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // Closed by the pipe already.
        }
      }
      await accepting;
      await Promise.all(pipes);
    },
  };
}

Deno.test("a delivery port that peers cannot reach leaves deliveries on gRPC", async () => {
  await using register = await startLocalRegister();
  // The service listens on 127.0.0.2, peers dial 127.0.0.3, where only its
  // RPC port is forwarded: its delivery port is out of their reach.
  await using target = await startService(
    greeter,
    localServiceOptions(register.address, {
      rpcHostname: "127.0.0.2",
      lanIp: "127.0.0.3",
    }),
  );
  const rpcPort = Number(target.rpcAddress.split(":")[1]);
  await using _proxy = tcpProxy(
    { hostname: "127.0.0.3", port: rpcPort },
    { hostname: "127.0.0.2", port: rpcPort },
  );
  await using caller = await startCaller(register.address);
  await using client = await TestClient.connect(target.port);
  await untilClientCount(caller.api, 1, "the caller sees the client");
  const sent: string[] = [];
  for (let i = 0; i < 50; i++) {
    sent.push(`m${i}`);
    await caller.api.sendToClient(client.id, `m${i}`);
    // Time for the caller to try the delivery port and give up.
    if (i === 0) await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.deepEqual(await client.take(sent.length), sent);
  assert.deepEqual(await batchesOf(caller.port), {
    grpc: 50,
    deliveryPort: 0,
  });
});

Deno.test("deliveryPort: false and mutual TLS keep deliveries on gRPC", async (t) => {
  await t.step("deliveryPort: false", async () => {
    await using register = await startLocalRegister();
    await using target = await startService(
      greeter,
      localServiceOptions(register.address, { deliveryPort: false }),
    );
    await using caller = await startCaller(register.address);
    await using client = await TestClient.connect(target.port);
    await untilClientCount(caller.api, 1, "the caller sees the client");
    assert.equal(target.deliveryPort, undefined);
    for (let i = 0; i < 20; i++) {
      await caller.api.sendToClient(client.id, `m${i}`);
    }
    assert.equal((await client.take(20)).length, 20);
    assert.deepEqual(await batchesOf(caller.port), {
      grpc: 20,
      deliveryPort: 0,
    });
  });

  const certs = await makeCertificates();
  for (const mutual of [false, true]) {
    await t.step(`${mutual ? "mutual" : "one-way"} TLS`, async () => {
      const tls: TlsOptions = { ...certs.node, ca: certs.ca, mutual };
      await using register = await startLocalRegister({ tls });
      await using target = await startService(
        greeter,
        localServiceOptions(register.address, { tls }),
      );
      await using caller = await startCaller(register.address, { tls });
      await using client = await TestClient.connect(target.port);
      await untilClientCount(caller.api, 1, "the caller sees the client");
      let sent = 0;
      const send = async () => {
        await caller.api.sendToClient(client.id, `m${sent}`);
        assert.equal(await client.next(), `m${sent++}`);
      };
      if (mutual) {
        for (let i = 0; i < 20; i++) await send();
        assert.equal(target.deliveryPort, undefined);
        assert.deepEqual(await batchesOf(caller.port), {
          grpc: 20,
          deliveryPort: 0,
        });
      } else {
        // The TLS handshake takes a moment; batches go on gRPC meanwhile.
        await eventually("batches use the delivery port", async () => {
          await send();
          return (await batchesOf(caller.port)).deliveryPort > 0;
        });
        // The port speaks TLS only: a plain hello gets no answer.
        const answer = await answerTo(
          target.deliveryPort!,
          encodeHello(undefined),
        );
        assert.equal(answer.ready, false);
      }
    });
  }
});

Deno.test("startService() checks deliveryPort", async () => {
  await using register = await startLocalRegister();
  await assert.rejects(
    startService(
      {},
      localServiceOptions(register.address, { deliveryPort: -1 }),
    ),
    (error: unknown) =>
      error instanceof RangeError &&
      /'deliveryPort' must be an integer from 0 to 65535, or false/.test(
        error.message,
      ),
  );
  await using first = await startCaller(register.address);
  const taken = first.deliveryPort!;
  await assert.rejects(
    startService(
      {},
      localServiceOptions(register.address, {
        deliveryPort: taken,
        lanIp: "127.0.0.1",
      }),
    ),
    (error: unknown) =>
      error instanceof Error &&
      error.message.includes(`127.0.0.1:${taken}: the port is in use`),
  );
  // An RPC port in use fails the start after the delivery port listened:
  // it is closed again, so its port is free at once.
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const freePort = probe.addr.port;
  probe.close();
  await assert.rejects(
    startService(
      {},
      localServiceOptions(register.address, {
        rpcPort: Number(first.rpcAddress.split(":")[1]),
        deliveryPort: freePort,
      }),
    ),
    (error: unknown) =>
      error instanceof GatewayError && error.code === "unavailable" &&
      /the port is in use \(pick another with the 'rpcPort' option\)/.test(
        error.message,
      ),
  );
  Deno.listen({ hostname: "127.0.0.1", port: freePort }).close();
  await eventually(
    "the cluster still works",
    async () => (await first.api.getAllClientCount()) === 0,
  );
});
