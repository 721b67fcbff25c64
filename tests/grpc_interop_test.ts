// The service RPC API is plain gRPC: a stock @grpc/grpc-js client (not
// Connect) pushes to clients and queries the cluster through one service.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import {
  create,
  type DescMessage,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import {
  BindUidRequestSchema,
  BindUidResponseSchema,
  GetAllClientCountRequestSchema,
  GetAllClientCountResponseSchema,
  Scope,
  SendToClientRequestSchema,
  SendToClientResponseSchema,
  SendToUidRequestSchema,
  SendToUidResponseSchema,
} from "../proto/gen/websocket/v1/gateway_pb.ts";
import { TestClient } from "./helpers/clients.ts";
import {
  startRegisterProcess,
  startServiceProcess,
} from "./helpers/processes.ts";
import { eventually } from "./helpers/waits.ts";

/** One unary call with grpc-js, messages encoded with protobuf-es. */
function call<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  method: string,
  input: I,
  output: O,
  request: MessageInitShape<I>,
  metadata = new grpc.Metadata(),
): Promise<MessageShape<O>> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      `/websocket.v1.GatewayService/${method}`,
      (message: MessageShape<I>) => Buffer.from(toBinary(input, message)),
      (bytes: Buffer) => fromBinary(output, bytes),
      create(input, request),
      metadata,
      { deadline: Date.now() + 5000 },
      (error, response) => error ? reject(error) : resolve(response!),
    );
  });
}

Deno.test("a stock grpc-js client pushes to clients through any service", async () => {
  const secret = "s3cret";
  const register = await startRegisterProcess(["--secret", secret]);
  const s1 = await startServiceProcess(register.address, ["--secret", secret]);
  const s2 = await startServiceProcess(register.address, ["--secret", secret]);
  const client = new grpc.Client(
    s1.info.rpcAddress,
    grpc.credentials.createInsecure(),
  );
  const c2 = await TestClient.connect(s2.info.port);
  const auth = new grpc.Metadata();
  auth.set("authorization", `Bearer ${secret}`);
  try {
    // Cluster scope (the default) counts the clients of every service.
    await eventually("s1 sees the client of s2", async () => {
      const { count } = await call(
        client,
        "GetAllClientCount",
        GetAllClientCountRequestSchema,
        GetAllClientCountResponseSchema,
        {},
        auth,
      );
      return count === 1n;
    });
    // Node scope is for the services themselves, which prove the secret
    // instead of sending it: a backend with the bearer secret is refused.
    await assert.rejects(
      call(
        client,
        "GetAllClientCount",
        GetAllClientCountRequestSchema,
        GetAllClientCountResponseSchema,
        { scope: Scope.NODE },
        auth,
      ),
      (error: grpc.ServiceError) =>
        error.code === grpc.status.UNAUTHENTICATED &&
        /SCOPE_NODE as a backend/.test(error.details),
    );

    // s1 forwards a push to the client held by s2.
    await call(
      client,
      "SendToClient",
      SendToClientRequestSchema,
      SendToClientResponseSchema,
      {
        clientId: c2.id,
        payload: { body: { case: "text", value: "from a backend" } },
      },
      auth,
    );
    assert.equal(await c2.next(), "from a backend");

    await call(
      client,
      "BindUid",
      BindUidRequestSchema,
      BindUidResponseSchema,
      { clientId: c2.id, uid: "u1" },
      auth,
    );
    await call(
      client,
      "SendToUid",
      SendToUidRequestSchema,
      SendToUidResponseSchema,
      {
        uids: ["u1"],
        payload: { body: { case: "binary", value: new Uint8Array([1, 2]) } },
      },
      auth,
    );
    assert.deepEqual(await c2.next(), new Uint8Array([1, 2]));

    // Bad input is INVALID_ARGUMENT; a missing secret is UNAUTHENTICATED.
    await assert.rejects(
      call(
        client,
        "SendToClient",
        SendToClientRequestSchema,
        SendToClientResponseSchema,
        {
          clientId: "not-an-id",
          payload: { body: { case: "text", value: "x" } },
        },
        auth,
      ),
      (error: grpc.ServiceError) =>
        error.code === grpc.status.INVALID_ARGUMENT &&
        error.details.includes("not-an-id"),
    );
    await assert.rejects(
      call(
        client,
        "SendToClient",
        SendToClientRequestSchema,
        SendToClientResponseSchema,
        { clientId: c2.id, payload: { body: { case: "text", value: "x" } } },
      ),
      (error: grpc.ServiceError) => error.code === grpc.status.UNAUTHENTICATED,
    );
    // The refused call delivered nothing: the next message is this marker.
    await call(
      client,
      "SendToClient",
      SendToClientRequestSchema,
      SendToClientResponseSchema,
      { clientId: c2.id, payload: { body: { case: "text", value: "marker" } } },
      auth,
    );
    assert.equal(await c2.next(), "marker");
  } finally {
    client.close();
    await c2.close();
    await s1.child.stop();
    await s2.child.stop();
    await register.child.stop();
  }
});
