// The Deliver stream between services: batches in the compact `packed`
// form (and the plain protobuf form) reach the clients in order; a
// malformed batch is refused as a whole.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
} from "@connectrpc/connect";
import {
  createGrpcTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import {
  create,
  fromBinary,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import {
  type DeliverRequest,
  DeliverRequestSchema,
  type DeliverResponse,
  DeliverResponseSchema,
  GatewayService,
} from "../proto/gen/websocket/v1/gateway_pb.ts";
import { DeliveryEncoder } from "../internal/delivery/codec.ts";

const encoder = new DeliveryEncoder();
import { concat, TestClient } from "./helpers/clients.ts";
import {
  startRegisterProcess,
  startServiceProcess,
} from "./helpers/processes.ts";

type DeliverRequestInit = MessageInitShape<typeof DeliverRequestSchema>;

/** Sends one batch on a fresh Deliver stream and returns the first answer. */
async function deliverOnce(
  rpcAddress: string,
  request: DeliverRequestInit,
): Promise<number> {
  const baseUrl = `http://${rpcAddress}`;
  const sessionManager = new Http2SessionManager(baseUrl);
  try {
    return await deliverOn(
      createClient(
        GatewayService,
        createGrpcTransport({ baseUrl, sessionManager }),
      ),
      request,
    );
  } finally {
    sessionManager.abort();
  }
}

async function deliverOn(
  client: Client<typeof GatewayService>,
  request: DeliverRequestInit,
): Promise<number> {
  let acknowledged!: () => void;
  const done = new Promise<void>((resolve) => acknowledged = resolve);
  async function* requests() {
    yield request;
    await done;
  }
  for await (const response of client.deliver(requests())) {
    acknowledged();
    return response.batches;
  }
  throw new Error("the Deliver stream ended without an answer");
}

Deno.test("Deliver applies packed batches in order and refuses malformed ones", async (t) => {
  const register = await startRegisterProcess();
  const service = await startServiceProcess(register.address);
  try {
    const { rpcAddress, port } = service.info;

    await t.step(
      "protobuf deliveries, then packed ones: text, binary, non-ASCII, close",
      async () => {
        await using client = await TestClient.connect(port);
        const bytes = new Uint8Array([0, 1, 2, 250, 255]);
        // Each encode returns a view of a scratch buffer: copy it at once.
        const packed = concat(
          encoder.toClient(client.id, "héllo ✓ 𝄞").slice(),
          encoder.toClient(client.id, bytes).slice(),
          encoder.toAll("to all", [client.id]).slice(),
          encoder.toAll("to all but nobody", []).slice(),
          encoder.close(client.id, "bye").slice(),
        );
        const batches = await deliverOnce(rpcAddress, {
          deliveries: [{
            target: {
              case: "client",
              value: {
                clientId: client.id,
                payload: { body: { case: "text", value: "protobuf first" } },
              },
            },
          }],
          packed,
        });
        assert.equal(batches, 1);
        assert.deepEqual(await client.take(4), [
          "protobuf first",
          "héllo ✓ 𝄞",
          bytes,
          "to all but nobody",
        ]);
        assert.equal(await client.next(), "bye");
        assert.equal((await client.closed).code, 1000);
      },
    );

    await t.step(
      "a malformed batch is refused and none of it applied",
      async () => {
        await using client = await TestClient.connect(port);
        const good = encoder.toClient(client.id, "from a bad batch").slice();
        for (
          const garbage of [
            new Uint8Array([9]), // unknown kind
            new Uint8Array([2, 40, 65]), // a clientId longer than the batch
            new Uint8Array([2, 1, 65, 7]), // unknown message tag
            new Uint8Array([1, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // varint
          ]
        ) {
          await assert.rejects(
            deliverOnce(rpcAddress, { packed: concat(good, garbage) }),
            (error: unknown) =>
              error instanceof ConnectError &&
              error.code === Code.InvalidArgument,
          );
        }
        await deliverOnce(rpcAddress, {
          packed: encoder.toClient(client.id, "good").slice(),
        });
        assert.equal(await client.next(), "good");
        assert.equal(client.pending.length, 0);
      },
    );
  } finally {
    await service.child.stop();
    await register.child.stop();
  }
});

/**
 * One Deliver stream with a stock grpc-js client: writes `request`, waits
 * for its acknowledgement, ends the stream and waits for the final status.
 */
function deliverWithGrpcJs(
  rpcAddress: string,
  request: DeliverRequestInit,
  channelOptions: grpc.ChannelOptions,
): Promise<{ batches: number; status: grpc.StatusObject }> {
  const client = new grpc.Client(
    rpcAddress,
    grpc.credentials.createInsecure(),
    channelOptions,
  );
  const call = client.makeBidiStreamRequest(
    `/${GatewayService.typeName}/${GatewayService.method.deliver.name}`,
    (message: DeliverRequest) =>
      Buffer.from(toBinary(DeliverRequestSchema, message)),
    (bytes: Buffer) => fromBinary(DeliverResponseSchema, bytes),
    new grpc.Metadata(),
    { deadline: Date.now() + 5000 },
  );
  return new Promise((resolve, reject) => {
    let batches = 0;
    call.on("data", (response: DeliverResponse) => {
      batches += response.batches;
      call.end();
    });
    call.on("error", reject);
    call.on("status", (status: grpc.StatusObject) => {
      client.close();
      resolve({ batches, status });
    });
    call.write(create(DeliverRequestSchema, request));
  });
}

Deno.test("a stock grpc-js client streams deliveries, with and without compression", async () => {
  const register = await startRegisterProcess();
  const service = await startServiceProcess(register.address);
  try {
    const { rpcAddress, port } = service.info;
    await using client = await TestClient.connect(port);
    for (
      const [name, options] of [
        ["plain", {}],
        // gzip: the service's own fast path does not take it, Connect does.
        ["gzip", { "grpc.default_compression_algorithm": 2 }],
      ] as const
    ) {
      const { batches, status } = await deliverWithGrpcJs(rpcAddress, {
        deliveries: [{
          target: {
            case: "client",
            value: {
              clientId: client.id,
              payload: { body: { case: "text", value: `${name} protobuf` } },
            },
          },
        }],
        packed: encoder.toClient(client.id, `${name} packed`).slice(),
      }, options);
      assert.equal(batches, 1, name);
      assert.equal(status.code, grpc.status.OK, `${name}: ${status.details}`);
      assert.deepEqual(await client.take(2), [
        `${name} protobuf`,
        `${name} packed`,
      ]);
    }
  } finally {
    await service.child.stop();
    await register.child.stop();
  }
});
