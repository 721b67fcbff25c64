// Test helpers: fake nodes that record everything they are sent. A
// FakeNode is a plain node:http2 server that answers as a register or a
// service would, just enough for a real service to talk to it: the
// challenge (with a right proof when it is given the secret, a wrong one
// otherwise), Join (a member list of the caller and whoever `members`
// adds), Deliver (acknowledging every batch, naming a delivery port) and
// every unary call (an empty answer). A FakeDeliveryPort is a TCP listener
// that answers READY to any hello and acknowledges batches. Both keep the
// request headers as they were decoded and every byte of every body.

import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import {
  create,
  type DescMessage,
  fromBinary,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import {
  ChallengeRequestSchema,
  ChallengeResponseSchema,
  NodeAuthService,
} from "../../proto/gen/websocket/v1/node_auth_pb.ts";
import {
  JoinRequestSchema,
  JoinResponseSchema,
  RegisterService,
} from "../../proto/gen/websocket/v1/register_pb.ts";
import {
  calleeProof,
  peerBinding,
  REGISTER_BINDING,
} from "../../internal/base/node_proof.ts";
import {
  GrpcFrameReader,
  writeFrameHeader,
} from "../../internal/grpc/grpc_frame.ts";
import {
  DELIVER_PATH,
  DELIVERY_PORT_HEADER,
  HELLO_HEADER_BYTES,
  LINK_VERSION,
  MAGIC,
  PORT_MESSAGE,
  readU32,
  writeU32,
} from "../../internal/delivery/wire.ts";

const CHALLENGE_PATH =
  `/${NodeAuthService.typeName}/${NodeAuthService.method.challenge.name}`;
const JOIN_PATH =
  `/${RegisterService.typeName}/${RegisterService.method.join.name}`;

/** One request a fake node was sent. */
export interface RecordedCall {
  readonly path: string;
  readonly headers: Readonly<Record<string, unknown>>;
}

/** Everything that reached a fake, to search for what must not be there. */
export class Recording {
  readonly calls: RecordedCall[] = [];
  readonly #chunks: Uint8Array[] = [];

  /** Keeps a chunk of a body, or of a connection. */
  bytes(chunk: Uint8Array): void {
    this.#chunks.push(chunk.slice());
  }

  /** Every header and byte received, as one Latin-1 string to search. */
  text(): string {
    const decoder = new TextDecoder("latin1");
    return [
      ...this.calls.map((call) => JSON.stringify(call.headers)),
      ...this.#chunks.map((chunk) => decoder.decode(chunk)),
    ].join("\n");
  }

  /** Bytes received in all. */
  get size(): number {
    return this.#chunks.reduce((n, chunk) => n + chunk.length, 0);
  }
}

/** Options of {@linkcode FakeNode.start}. */
export interface FakeNodeOptions {
  /** A register or a service. */
  readonly role: "register" | "peer";
  /**
   * The cluster secret, to answer challenges with a right proof (a node of
   * the cluster that records what it gets); unset, the proof is wrong.
   */
  readonly secret?: string;
  /** Members that Join lists besides the caller. */
  readonly members?: () => { nodeId: string; rpcAddress: string }[];
  /** The delivery port that Deliver names. */
  readonly deliveryPort?: () => number | undefined;
}

/** A fake register or service on a free loopback port. */
export class FakeNode implements AsyncDisposable {
  readonly recording: Recording = new Recording();
  readonly #server: http2.Http2Server;
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  readonly #options: FakeNodeOptions;
  #address = "";

  private constructor(options: FakeNodeOptions) {
    this.#options = options;
    this.#server = http2.createServer((req, res) => this.#serve(req, res));
    this.#server.on("session", (session) => {
      this.#sessions.add(session);
      session.on("error", () => {});
      session.once("close", () => this.#sessions.delete(session));
    });
  }

  /** Starts a fake node on a free loopback port. */
  static async start(options: FakeNodeOptions): Promise<FakeNode> {
    const node = new FakeNode(options);
    await new Promise<void>((resolve) =>
      node.#server.listen(0, "127.0.0.1", resolve)
    );
    node.#address = `127.0.0.1:${(node.#server.address() as AddressInfo).port}`;
    return node;
  }

  /** `127.0.0.1:port`. */
  get address(): string {
    return this.#address;
  }

  /** The paths it was called on, in order. */
  get paths(): string[] {
    return this.recording.calls.map((call) => call.path);
  }

  #serve(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) {
    const path = req.url;
    this.recording.calls.push({ path, headers: { ...req.headers } });
    const reader = new GrpcFrameReader(64 * 1024 * 1024);
    const messages: Uint8Array[] = [];
    req.on("error", () => {});
    res.on("error", () => {});
    if (path === DELIVER_PATH) {
      const port = this.#options.deliveryPort?.();
      res.writeHead(200, {
        "content-type": "application/grpc",
        ...(port === undefined ? {} : { [DELIVERY_PORT_HEADER]: String(port) }),
      });
    }
    req.on("data", (chunk: Uint8Array) => {
      this.recording.bytes(chunk);
      reader.push(chunk, (message) => {
        messages.push(message.slice());
        // DeliverResponse { batches: 1 } for every batch.
        if (path === DELIVER_PATH) res.write(frame(Uint8Array.of(0x08, 1)));
      });
    });
    req.once("end", () => {
      if (path === DELIVER_PATH) {
        res.addTrailers({ "grpc-status": "0" });
        res.end();
      } else if (path === CHALLENGE_PATH) {
        const request = fromBinary(ChallengeRequestSchema, messages[0]!);
        this.#answer(res, ChallengeResponseSchema, {
          nonce: "fake-nonce",
          proof: calleeProof(
            this.#options.secret ?? "not the secret",
            request.clientNonce,
            this.#options.role === "register"
              ? REGISTER_BINDING
              : peerBinding(this.#address),
          ),
          ttlMs: 60_000,
        });
      } else if (path === JOIN_PATH) {
        const { member } = fromBinary(JoinRequestSchema, messages[0]!);
        res.writeHead(200, { "content-type": "application/grpc" });
        res.write(frame(toBinary(
          JoinResponseSchema,
          create(JoinResponseSchema, {
            event: {
              case: "members",
              value: {
                registerId: "fake-register",
                version: 1n,
                members: [
                  ...(member === undefined ? [] : [member]),
                  ...this.#options.members?.() ?? [],
                ],
              },
            },
          }),
        )));
        // Open until the caller leaves.
      } else {
        // Any unary call: an empty answer, which decodes as defaults.
        res.writeHead(200, { "content-type": "application/grpc" });
        res.write(frame(new Uint8Array(0)));
        res.addTrailers({ "grpc-status": "0" });
        res.end();
      }
    });
  }

  #answer<D extends DescMessage>(
    res: http2.Http2ServerResponse,
    schema: D,
    message: MessageInitShape<D>,
  ): void {
    res.writeHead(200, { "content-type": "application/grpc" });
    res.write(frame(toBinary(schema, create(schema, message))));
    res.addTrailers({ "grpc-status": "0" });
    res.end();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const closed = new Promise((resolve) => this.#server.close(resolve));
    for (const session of this.#sessions) session.destroy();
    await closed;
  }
}

/** A gRPC message in its frame. */
function frame(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + message.length);
  writeFrameHeader(out, 0, message.length);
  out.set(message, 5);
  return out;
}

/** A fake delivery port: READY to any hello, an ACK for every batch. */
export class FakeDeliveryPort implements AsyncDisposable {
  readonly recording: Recording = new Recording();
  /** The hellos received, as they came. */
  readonly hellos: Uint8Array[] = [];
  /** Batches received. */
  batches = 0;
  readonly #listener: Deno.TcpListener;
  readonly #conns = new Set<Deno.Conn>();
  readonly #accepting: Promise<void>;

  constructor() {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#listener = listener;
    this.#accepting = (async () => {
      const served: Promise<void>[] = [];
      try {
        for await (const conn of listener) {
          this.#conns.add(conn);
          served.push(this.#serve(conn).catch(() => {}));
        }
      } catch {
        // Closed.
      }
      await Promise.all(served);
    })();
  }

  get port(): number {
    return this.#listener.addr.port;
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    let input = new Uint8Array(0);
    let helloDone = false;
    const buffer = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      const chunk = buffer.slice(0, n);
      this.recording.bytes(chunk);
      const joined = new Uint8Array(input.length + n);
      joined.set(input);
      joined.set(chunk, input.length);
      input = joined;
      if (!helloDone) {
        if (input.length < HELLO_HEADER_BYTES) continue;
        let length = HELLO_HEADER_BYTES +
          (input[MAGIC.length + 1]! << 8 | input[MAGIC.length + 2]!);
        // Version 3: the link id after the proof, after its u8 length.
        if (input[MAGIC.length] === LINK_VERSION) {
          if (input.length < length + 1) continue;
          length += 1 + input[length]!;
        }
        if (input.length < length) continue;
        this.hellos.push(input.slice(0, length));
        input = input.slice(length);
        helloDone = true;
        await conn.write(Uint8Array.of(PORT_MESSAGE.READY));
      }
      let acked = 0;
      while (input.length >= 4 && input.length >= 4 + readU32(input, 0)) {
        input = input.slice(4 + readU32(input, 0));
        acked++;
      }
      if (acked > 0) {
        this.batches += acked;
        const ack = new Uint8Array(5);
        ack[0] = PORT_MESSAGE.ACK;
        writeU32(ack, 1, acked);
        await conn.write(ack);
      }
    }
    conn.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch {
        // Closed by its end already.
      }
    }
    await this.#accepting;
  }
}
