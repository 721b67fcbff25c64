// One suite, run against both delivery transports (the gRPC Deliver stream
// and the delivery port), on real sockets: the receiver's checks, its
// order and acknowledgements, its limits and node proofs of the secret, a
// peer that dies, and a DeliveryLink on top of each.

import assert from "node:assert/strict";
import { GatewayError, type Message } from "../../mod.ts";
import { createLogger } from "../../internal/base/logger.ts";
import type {
  BatchSender,
  BatchSenderEvents,
} from "../../internal/delivery/batch_sender.ts";
import {
  DeliveryEncoder,
  type DeliveryTarget,
} from "../../internal/delivery/codec.ts";
import { DeliveryLink } from "../../internal/delivery/delivery_link.ts";
import { deliverEndpoint } from "../../internal/delivery/grpc_endpoint.ts";
import { GrpcBatchSender } from "../../internal/delivery/grpc_sender.ts";
import { listenDeliveryPort } from "../../internal/delivery/port_listener.ts";
import { PortBatchSender } from "../../internal/delivery/port_sender.ts";
import { BATCH_HEADROOM, KIND } from "../../internal/delivery/wire.ts";
import { openRpcChannel } from "../../internal/grpc/rpc_channel.ts";
import { listenRpc } from "../../internal/grpc/rpc_server.ts";
import { createRpcAuth } from "../../internal/grpc/rpc_auth.ts";
import { NodeVerifier } from "../../internal/base/node_verifier.ts";
import {
  callerProof,
  formatNodeToken,
  peerBinding,
} from "../../internal/base/node_proof.ts";
import { eventually } from "../helpers/waits.ts";

const logger = createLogger("test", "error");

/** Records what batches did, in order. */
class RecordingTarget implements DeliveryTarget {
  readonly log: string[] = [];
  toAll(message: Message, exclude?: ReadonlySet<string>): void {
    this.log.push(`all ${text(message)} -${[...exclude ?? []]}`);
  }
  toClient(clientId: string, message: Message): void {
    this.log.push(`client ${clientId} ${text(message)}`);
  }
  toUids(uids: readonly string[], message: Message): void {
    this.log.push(`uids ${uids} ${text(message)}`);
  }
  toGroups(
    groups: readonly string[],
    message: Message,
    exclude?: ReadonlySet<string>,
  ): void {
    this.log.push(`groups ${groups} ${text(message)} -${[...exclude ?? []]}`);
  }
  close(clientId: string, lastMessage?: Message): void {
    this.log.push(`close ${clientId} ${lastMessage && text(lastMessage)}`);
  }
}

function text(message: Message): string {
  return typeof message === "string" ? message : `bytes(${[...message]})`;
}

/** One receiving end and a way to open senders to it. */
interface Receiver extends AsyncDisposable {
  readonly target: RecordingTarget;
  /** Opens a sender; `secret` overrides the receiver's (null: none). */
  open(events: BatchSenderEvents, secret?: string | null): BatchSender;
  /** Stops the receiving end, as a peer that goes away. */
  close(): Promise<void>;
}

interface ReceiverOptions {
  readMaxBytes?: number;
  secret?: string;
}

/** The transports, each as a way to start a receiver on free ports. */
const TRANSPORTS: Record<string, (o: ReceiverOptions) => Promise<Receiver>> = {
  async grpc({ readMaxBytes = 1 << 20, secret }) {
    const target = new RecordingTarget();
    const auth = secret === undefined
      ? undefined
      : createRpcAuth(secret, { backendPaths: [] });
    const rpc = await listenRpc({
      hostname: "127.0.0.1",
      port: 0,
      routes: () => {},
      rawMethods: [deliverEndpoint(target, () => undefined)],
      auth,
      readMaxBytes,
      pingIntervalMs: 1000,
      pingTimeoutMs: 2000,
      logger,
    });
    const address = `127.0.0.1:${rpc.port}`;
    auth?.verifier.bindTo(address);
    const channels: ReturnType<typeof openRpcChannel>[] = [];
    const close = async () => {
      for (const channel of channels) channel.close();
      await rpc.close(0);
    };
    return {
      target,
      open(events, clientSecret = secret) {
        const channel = openRpcChannel(address, {
          secret: clientSecret ?? undefined,
          pingIntervalMs: 1000,
          pingTimeoutMs: 2000,
        });
        channels.push(channel);
        return new GrpcBatchSender(channel.openCall, address, events);
      },
      close: () => rpc.close(0),
      [Symbol.asyncDispose]: close,
    };
  },
  // deno-lint-ignore require-await
  async delivery_port({ readMaxBytes = 1 << 20, secret }) {
    const target = new RecordingTarget();
    // As beside a service: the verifier of its RPC server, bound to the
    // address it announces; senders get a nonce from it (over gRPC there).
    const address = "127.0.0.1:1";
    const verifier = secret === undefined
      ? undefined
      : new NodeVerifier(secret, { binding: peerBinding(address) });
    const port = listenDeliveryPort({
      hostname: "127.0.0.1",
      port: 0,
      target,
      verifier,
      readMaxBytes,
      helloTimeoutMs: 2000,
      logger,
    });
    return {
      target,
      open(events, clientSecret = secret) {
        const token = () => {
          if (clientSecret == null || verifier === undefined) {
            return Promise.resolve(undefined);
          }
          const { nonce } = verifier.challenge(new Uint8Array(16));
          const binding = peerBinding(address);
          const proof = callerProof(clientSecret, nonce, binding);
          return Promise.resolve(formatNodeToken({ nonce, proof }));
        };
        return new PortBatchSender(
          () => Deno.connect({ hostname: "127.0.0.1", port: port.port }),
          token,
          address,
          events,
        );
      },
      close: () => port.close(),
      [Symbol.asyncDispose]: () => port.close(),
    };
  },
};

/** What a sender reported. */
class Events implements BatchSenderEvents {
  acknowledged = 0;
  ended: GatewayError | undefined;
  readonly #ended = Promise.withResolvers<GatewayError>();
  onReady(): void {}
  onAcknowledged(batches: number): void {
    this.acknowledged += batches;
  }
  onEnded(error: GatewayError): void {
    this.ended = error;
    this.#ended.resolve(error);
  }
  onDeliveryPort(): void {}
  get end(): Promise<GatewayError> {
    return this.#ended.promise;
  }
}

/** Writes `batch` (packed bytes) on `sender`, with the headroom it needs. */
function write(sender: BatchSender, batch: Uint8Array): void {
  const buffer = new Uint8Array(BATCH_HEADROOM + batch.length);
  buffer.set(batch, BATCH_HEADROOM);
  sender.write(buffer, batch.length);
}

const encoder = new DeliveryEncoder();

for (const [name, start] of Object.entries(TRANSPORTS)) {
  Deno.test(`delivery over ${name}: batches are applied in order and acknowledged`, async () => {
    await using receiver = await start({});
    const events = new Events();
    const sender = receiver.open(events);
    const expected: string[] = [];
    for (let i = 0; i < 40; i++) {
      write(sender, encoder.toClient(`0123456789ab.${i}`, `m${i}`).slice());
      expected.push(`client 0123456789ab.${i} m${i}`);
    }
    const parts = [
      encoder.toAll("everyone", ["0123456789ab.1"]).slice(),
      encoder.toUids(["alice", "bob"], Uint8Array.of(1, 2)).slice(),
      encoder.toGroups(["g"], "ünïcode ✓", []).slice(),
      encoder.close("0123456789ab.2", "bye").slice(),
    ];
    const mixed = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (mixed.set(p, at), at + p.length), 0);
    write(sender, mixed);
    expected.push(
      "all everyone -0123456789ab.1",
      "uids alice,bob bytes(1,2)",
      "groups g ünïcode ✓ -",
      "close 0123456789ab.2 bye",
    );
    await eventually(
      "all 41 batches are acknowledged",
      () => events.acknowledged === 41,
    );
    assert.deepEqual(receiver.target.log, expected);
    assert.equal(events.ended, undefined);
    sender.abort(new GatewayError("closed", "done"));
  });

  Deno.test(`delivery over ${name}: a malformed batch ends the connection, and none of it is applied`, async () => {
    await using receiver = await start({});
    const events = new Events();
    const sender = receiver.open(events);
    write(sender, encoder.toClient("0123456789ab.1", "good").slice());
    const good = encoder.toClient("0123456789ab.1", "half").slice();
    // A good delivery, then one that ends early: the batch is refused whole.
    const bad = new Uint8Array(good.length + 2);
    bad.set(good);
    bad.set([KIND.CLIENT, 30], good.length);
    write(sender, bad);
    const error = await events.end;
    assert.equal(error.code, "invalid_argument", error.message);
    assert.match(error.message, /Cannot apply packed deliveries/);
    assert.deepEqual(receiver.target.log, ["client 0123456789ab.1 good"]);
    assert.equal(events.acknowledged, 1);
  });

  Deno.test(`delivery over ${name}: a batch over the limit is refused before it is read`, async () => {
    await using receiver = await start({ readMaxBytes: 256 });
    const events = new Events();
    const sender = receiver.open(events);
    write(sender, encoder.toClient("0123456789ab.1", "x".repeat(1000)).slice());
    const error = await events.end;
    assert.equal(error.code, "resource_exhausted", error.message);
    assert.deepEqual(receiver.target.log, []);
  });

  Deno.test(`delivery over ${name}: a wrong or missing secret is refused`, async () => {
    await using receiver = await start({ secret: "right" });
    for (const secret of ["wrong", null]) {
      const events = new Events();
      const sender = receiver.open(events, secret);
      write(sender, encoder.toClient("0123456789ab.1", "intruder").slice());
      const error = await events.end;
      assert.equal(
        error.code,
        "unauthenticated",
        `${secret}: ${error.message}`,
      );
    }
    const events = new Events();
    const sender = receiver.open(events, "right");
    write(sender, encoder.toClient("0123456789ab.1", "welcome").slice());
    await eventually(
      "the right secret is accepted",
      () => events.acknowledged === 1,
    );
    assert.deepEqual(receiver.target.log, ["client 0123456789ab.1 welcome"]);
    sender.abort(new GatewayError("closed", "done"));
  });

  Deno.test(`delivery over ${name}: a peer that goes away ends the connection as unavailable`, async () => {
    await using receiver = await start({});
    const events = new Events();
    const sender = receiver.open(events);
    write(sender, encoder.toClient("0123456789ab.1", "before").slice());
    await eventually(
      "the first batch is acknowledged",
      () => events.acknowledged === 1,
    );
    await receiver.close();
    const error = await events.end;
    assert.equal(error.code, "unavailable", error.message);
  });

  Deno.test(`delivery over ${name}: a DeliveryLink on it delivers in order and resolves each send`, async () => {
    await using receiver = await start({});
    const link = new DeliveryLink(
      { open: (events) => receiver.open(events) },
      "peer",
      { maxQueuedBytes: 1 << 20, deadlineMs: 5000 },
    );
    const sends: Promise<void>[] = [];
    for (let i = 0; i < 300; i++) {
      sends.push(link.send(encoder.toClient("0123456789ab.1", `${i}`)));
      if (i % 7 === 0) await new Promise((r) => setTimeout(r, 0));
    }
    await Promise.all(sends);
    assert.deepEqual(
      receiver.target.log,
      Array.from({ length: 300 }, (_, i) => `client 0123456789ab.1 ${i}`),
    );
    link.close();
  });
}
