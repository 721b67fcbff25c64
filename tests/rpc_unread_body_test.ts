// The RPC ports of a service and a register decide who calls from the
// request headers, before a byte of the body is read: a 60 MiB request
// without credentials, well-formed or not, gets UNAUTHENTICATED in a
// trailers-only answer; what follows of its body is dropped as it arrives,
// and past the size of a legal request the stream is reset, so the client
// stops. The process's resident memory hardly moves. With the bearer
// secret, a unary request larger than the largest legal one is refused as
// RESOURCE_EXHAUSTED before it is read, too.

import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { SendToAllRequestSchema } from "../proto/gen/websocket/v1/gateway_pb.ts";
import { TestClient } from "./helpers/clients.ts";
import { GC_FLAGS, rssAfterGc } from "./helpers/memory.ts";
import {
  rssOf,
  startLabService,
  startRegisterProcess,
} from "./helpers/processes.ts";
import { clientCountVia } from "./helpers/rpc.ts";

const SECRET = "s3cret";
const MiB = 1024 * 1024;
const BODY_BYTES = 60 * MiB;
/** What the finding allows a service to grow by, at most. */
const MAX_GROWTH = 64 * MiB;

/** How a {@linkcode sendBody} call ended. */
interface Answer {
  /** `grpc-status` of the answer (headers or trailers). */
  readonly status: string | undefined;
  readonly message: string;
  /** Whether the status came in a trailers-only answer. */
  readonly trailersOnly: boolean;
  /** Bytes of the body the client got to write before the answer. */
  readonly written: number;
}

/**
 * POSTs `body` in its gRPC frame (or with `length` in the frame header) to
 * `path`, 1 MiB at a time while the server takes it, and resolves with the
 * answer (or after a minute without one); then drops the connection.
 */
async function sendBody(
  address: string,
  path: string,
  body: Uint8Array,
  options: { length?: number; authorization?: string } = {},
): Promise<Answer> {
  const session = http2.connect(`http://${address}`);
  session.on("error", () => {});
  const stream = session.request({
    ":method": "POST",
    ":path": path,
    "content-type": "application/grpc",
    te: "trailers",
    ...(options.authorization === undefined
      ? {}
      : { authorization: options.authorization }),
  });
  stream.on("error", () => {});
  let written = 0;
  const answer = new Promise<Answer>((resolve) => {
    const settle = (
      headers: http2.IncomingHttpHeaders,
      trailersOnly: boolean,
    ) => {
      const status = headers["grpc-status"];
      if (status === undefined) return;
      resolve({
        status: String(status),
        message: decodeURIComponent(String(headers["grpc-message"] ?? "")),
        trailersOnly,
        written,
      });
    };
    stream.once("response", (headers) => settle(headers, true));
    stream.once("trailers", (trailers) => settle(trailers, false));
    stream.once("close", () =>
      resolve({
        status: undefined,
        message: `closed with ${stream.rstCode}`,
        trailersOnly: false,
        written,
      }));
  });
  stream.resume();
  const length = options.length ?? body.length;
  const header = Uint8Array.of(
    0,
    length >>> 24,
    (length >>> 16) & 0xff,
    (length >>> 8) & 0xff,
    length & 0xff,
  );
  let done = false;
  const writing = (async () => {
    stream.write(header);
    for (let at = 0; at < body.length && !done; at += MiB) {
      if (stream.destroyed || stream.closed) break;
      written += Math.min(MiB, body.length - at);
      if (!stream.write(body.subarray(at, at + MiB))) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 100);
          stream.once("drain", () => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    }
    if (!done && !stream.destroyed) stream.end();
  })();
  const timer = setTimeout(() => stream.close(), 60_000);
  try {
    return await answer;
  } finally {
    done = true;
    clearTimeout(timer);
    await writing;
    session.destroy();
  }
}

function wellFormed(): Uint8Array {
  return toBinary(
    SendToAllRequestSchema,
    create(SendToAllRequestSchema, {
      payload: { body: { case: "binary", value: new Uint8Array(BODY_BYTES) } },
    }),
  );
}

/** 60 MiB that are no protobuf at all. */
function malformed(): Uint8Array {
  return new Uint8Array(BODY_BYTES).fill(0xff);
}

const SEND_TO_ALL = "/websocket.v1.GatewayService/SendToAll";
const JOIN = "/websocket.v1.RegisterService/Join";
const CHALLENGE = "/websocket.v1.NodeAuthService/Challenge";

Deno.test("a 60 MiB request without credentials is refused unread, and memory stays flat", async (t) => {
  const register = await startRegisterProcess(["--secret", SECRET]);
  const service = await startLabService(register.address, [
    "--secret",
    SECRET,
  ], { denoFlags: GC_FLAGS });
  const { port, rpcAddress } = service.info;
  const pid = service.child.pid;
  try {
    const before = await rssAfterGc(port, pid);
    const registerBefore = await rssOf(register.child.pid);
    const figures: string[] = [];
    const grew = async (what: string) => {
      const raw = await rssOf(pid) - before;
      figures.push(`${what}: +${(raw / MiB).toFixed(1)} MiB`);
      assert.ok(
        raw < MAX_GROWTH,
        `${what}: resident memory grew by ${(raw / MiB).toFixed(1)} MiB`,
      );
    };

    const bodies = [
      ["well-formed", wellFormed],
      ["malformed", malformed],
    ] as const;
    for (const [what, body] of bodies) {
      await t.step(
        `${what}: UNAUTHENTICATED, before the body is read`,
        async () => {
          const answer = await sendBody(rpcAddress, SEND_TO_ALL, body());
          assert.equal(answer.status, "16", answer.message);
          assert.ok(
            answer.written < 16 * MiB,
            `the client wrote ${answer.written} bytes before the answer`,
          );
          await grew(`unauthenticated ${what}`);
          assert.equal(answer.trailersOnly, true);
          assert.match(answer.message, /^Missing secret/);
        },
      );
    }

    await t.step("with a wrong secret: the same", async () => {
      const answer = await sendBody(rpcAddress, SEND_TO_ALL, malformed(), {
        authorization: "Bearer wrong",
      });
      assert.equal(answer.status, "16", answer.message);
      assert.ok(answer.written < 16 * MiB, `${answer.written} bytes written`);
      await grew("wrong secret");
    });

    await t.step(
      "with the secret: RESOURCE_EXHAUSTED, larger than the largest legal request",
      async () => {
        const answer = await sendBody(rpcAddress, SEND_TO_ALL, wellFormed(), {
          authorization: `Bearer ${SECRET}`,
        });
        assert.equal(answer.status, "8", answer.message);
        assert.match(answer.message, /larger than configured readMaxBytes/);
        assert.ok(answer.written < 16 * MiB, `${answer.written} bytes written`);
        await grew("authenticated, over the limit");
      },
    );

    await t.step(
      "the challenge, open to anyone, takes 256 bytes at most",
      async () => {
        for (const length of [BODY_BYTES, 10]) {
          const answer = await sendBody(rpcAddress, CHALLENGE, malformed(), {
            length,
          });
          assert.equal(answer.status, "8", answer.message);
          assert.ok(answer.written < 16 * MiB, `${answer.written} written`);
          await grew(`challenge, a first message of ${length} bytes`);
        }
      },
    );

    await t.step("the register refuses a 60 MiB Join unread", async () => {
      const answer = await sendBody(register.address, JOIN, malformed());
      assert.equal(answer.status, "16", answer.message);
      assert.ok(answer.written < 16 * MiB, `${answer.written} bytes written`);
      const raw = await rssOf(register.child.pid) - registerBefore;
      figures.push(`register: +${(raw / MiB).toFixed(1)} MiB`);
      assert.ok(raw < MAX_GROWTH, `the register grew by ${raw} bytes`);
    });

    await t.step("both still serve", async () => {
      const after = await rssAfterGc(port, pid);
      figures.push(
        `after a collection: +${((after - before) / MiB).toFixed(1)} MiB`,
      );
      assert.ok(after - before < MAX_GROWTH);
      await using client = await TestClient.connect(port);
      assert.ok(client.id.length > 0);
      assert.equal(await clientCountVia(rpcAddress, { secret: SECRET }), 1);
      console.log(
        `resident memory of the service (register), from ${
          (before / MiB).toFixed(1)
        } MiB: ${figures.join("; ")}`,
      );
    });
  } finally {
    await service.child.stop();
    await register.child.stop();
  }
});
