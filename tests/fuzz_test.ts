// Fuzz: more than 10,000 random requests to every RPC method of a running
// service (GatewayService, the Deliver stream included) and register
// (RegisterService), through real gRPC, with random strings (empty, huge,
// unicode, valid-looking and real clientIds), scopes (unknown enum values
// too), payloads and info maps; plus garbage gRPC bodies and raw random
// bytes on the RPC ports and the delivery port. Every call must end with a
// well-defined status (never INTERNAL or UNKNOWN), and afterwards both must
// still answer correctly and hold no leaked clients, uids, groups or
// members.
//
// The random seed is printed; set WSGATE_FUZZ_SEED to replay a run.

import assert from "node:assert/strict";
import * as http2 from "node:http2";
import type {
  DescField,
  DescMessage,
  DescMethod,
  DescOneof,
} from "@bufbuild/protobuf";
import { ScalarType } from "@bufbuild/protobuf";
import { type Service, startService } from "../mod.ts";
import { encodeHello } from "../internal/delivery/port_sender.ts";
import { openRpcChannel } from "../internal/grpc/rpc_channel.ts";
import { nodeTokenOf } from "../internal/base/node_proof.ts";
import { GatewayService } from "../proto/gen/websocket/v1/gateway_pb.ts";
import { RegisterService } from "../proto/gen/websocket/v1/register_pb.ts";
import { TestClient } from "./helpers/clients.ts";
import {
  greeter,
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { eventually, untilClientCount } from "./helpers/waits.ts";
import { prng } from "./helpers/random.ts";
import {
  callMethod,
  Code,
  codeOf,
  dial,
  memberIdsVia,
  type TestChannel,
} from "./helpers/rpc.ts";

const SECRET = "fuzz-secret";
const CONCURRENCY = 32;

/** Random values of every kind the protos use. */
class Fuzzer {
  readonly #random: () => number;
  /** Real clientIds and node ids, so that some requests hit real state. */
  readonly real: { clientIds: string[]; nodeIds: string[] };
  /** Addresses a fake member must not take (it would replace a real one). */
  readonly taken: Set<string>;

  constructor(
    seed: number,
    real: { clientIds: string[]; nodeIds: string[] },
    taken: Set<string>,
  ) {
    this.#random = prng(seed);
    this.real = real;
    this.taken = taken;
  }

  int(n: number): number {
    return Math.floor(this.#random() * n);
  }

  chance(p: number): boolean {
    return this.#random() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  bytes(max: number): Uint8Array {
    const out = new Uint8Array(this.int(max + 1));
    for (let i = 0; i < out.length; i++) out[i] = this.int(256);
    return out;
  }

  ascii(max: number): string {
    let s = "";
    for (let n = this.int(max + 1); n > 0; n--) {
      s += String.fromCharCode(32 + this.int(95));
    }
    return s;
  }

  nodeId(): string {
    const alphabet = "0123456789abcdefghijklmnopqrstuv";
    let id = "";
    for (let i = 0; i < 12; i++) id += alphabet[this.int(32)];
    return id;
  }

  clientId(): string {
    switch (this.int(8)) {
      case 0:
      case 6:
      case 7:
        return this.pick(this.real.clientIds);
      case 1:
        return `${this.pick(this.real.nodeIds)}.${this.int(1000).toString(36)}`;
      case 2:
        return `${this.nodeId()}.${this.int(1e6).toString(36)}`;
      case 3:
        return this.pick([
          "",
          ".",
          "0123456789ab.",
          "0123456789AB.1",
          "0123456789ab.1.2",
          `${this.pick(this.real.clientIds)} `,
          "0123456789ab.zzzzzzzzzzzz",
        ]);
      default:
        return this.string();
    }
  }

  address(): string {
    return this.pick([
      `127.0.0.1:${1 + this.int(65535)}`,
      `localhost:${this.int(70000)}`,
      `[::1]:${this.int(70000)}`,
      "nonsense",
      "",
      `${this.ascii(20)}:${this.int(100)}`,
      this.string(),
    ]);
  }

  string(): string {
    switch (this.int(12)) {
      case 0:
        return "";
      case 1:
        return this.pick(["u1", "u2", "g1", "g2", "k"]);
      case 2:
        return this.pick([
          "😀",
          "é",
          "\u0000",
          "\uffff",
          "\ud800",
          "مرحبا",
          "a\u0301",
          "\u202e",
          "🙂 group",
        ]);
      case 3:
        return "x".repeat(255 + this.int(3));
      case 4:
        return this.chance(0.1)
          ? "y".repeat(70_000)
          : "z".repeat(this.int(4000));
      case 5:
        return this.clientId();
      case 6:
        return this.pick(["../../etc/passwd", "'; DROP TABLE x; --", "%s%n"]);
      default:
        return this.ascii(24);
    }
  }

  enumValue(): number {
    return this.chance(0.75)
      ? this.int(3)
      : this.pick([3, -1, 99, 2 ** 31 - 1, this.int(1000)]);
  }

  scalar(type: ScalarType, name: string): unknown {
    switch (type) {
      case ScalarType.STRING:
        if (/client_?id/i.test(name)) return this.clientId();
        if (/address/i.test(name)) return this.address();
        if (/node_?id/i.test(name)) {
          return this.chance(0.5) ? this.nodeId() : this.string();
        }
        return this.string();
      case ScalarType.BYTES:
        return this.chance(0.02) ? this.bytes(100_000) : this.bytes(512);
      case ScalarType.BOOL:
        return this.chance(0.5);
      case ScalarType.INT64:
      case ScalarType.SINT64:
      case ScalarType.SFIXED64:
        return BigInt(this.int(2 ** 31)) * (this.chance(0.5) ? 1n : -1n);
      case ScalarType.UINT64:
      case ScalarType.FIXED64:
        return BigInt(this.int(2 ** 31)) * BigInt(this.int(2 ** 31));
      case ScalarType.DOUBLE:
      case ScalarType.FLOAT:
        return this.#random() * 1e6;
      default:
        return this.int(2 ** 31);
    }
  }

  /**
   * Mostly turns a close request about a real client into one about a
   * stranger, so that real clients live long enough to gather uids, groups
   * and info for the leak checks.
   */
  spare(request: Record<string, unknown> | undefined): void {
    if (request !== undefined && this.chance(0.9)) {
      request.clientId = `${this.nodeId()}.1`;
    }
  }

  /** A random init shape for any message, depth-limited. */
  message(desc: DescMessage, depth = 0): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    if (depth > 4) return out;
    for (const member of desc.members) {
      if (this.chance(0.15)) continue; // leave it unset
      if (member.kind === "oneof") {
        const oneof = member as DescOneof;
        const field = this.pick(oneof.fields);
        out[oneof.localName] = {
          case: field.localName,
          value: this.single(field, depth),
        };
      } else {
        out[member.localName] = this.field(member, depth);
      }
    }
    return out;
  }

  field(field: DescField, depth: number): unknown {
    switch (field.fieldKind) {
      case "list": {
        const n = this.int(this.chance(0.05) ? 200 : 5);
        const items: unknown[] = [];
        for (let i = 0; i < n; i++) {
          items.push(
            field.listKind === "scalar"
              ? this.scalar(field.scalar, field.name)
              : field.listKind === "enum"
              ? this.enumValue()
              : this.message(field.message, depth + 1),
          );
        }
        return items;
      }
      case "map": {
        const map: Record<string, unknown> = {};
        for (let n = this.int(this.chance(0.05) ? 100 : 4); n > 0; n--) {
          const key = String(this.scalar(ScalarType.STRING, "key"));
          map[key] = field.mapKind === "scalar"
            ? this.scalar(field.scalar, field.name)
            : field.mapKind === "enum"
            ? this.enumValue()
            : this.message(field.message, depth + 1);
        }
        return map;
      }
      default:
        return this.single(field, depth);
    }
  }

  single(field: DescField, depth: number): unknown {
    switch (field.fieldKind) {
      case "scalar":
        return this.scalar(field.scalar, field.name);
      case "enum":
        return this.enumValue();
      case "message":
        return this.message(field.message, depth + 1);
      default:
        return this.field(field, depth);
    }
  }
}

/**
 * A gRPC request whose body is random bytes, on a raw HTTP/2 session.
 * Resolves with the grpc-status and grpc-message, or the HTTP status when
 * there is no grpc-status.
 */
function garbageCall(
  session: http2.ClientHttp2Session,
  path: string,
  body: Uint8Array,
): Promise<{ status: string; message: string }> {
  return new Promise((resolve) => {
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request({
        ":method": "POST",
        ":path": path,
        "content-type": "application/grpc",
        te: "trailers",
        authorization: `Bearer ${SECRET}`,
      });
    } catch {
      return resolve({ status: "session gone", message: "" });
    }
    let status = "none";
    let message = "";
    const timer = setTimeout(() => stream.close(), 5000);
    const read = (headers: http2.IncomingHttpHeaders) => {
      if (headers["grpc-status"] !== undefined) {
        status = String(headers["grpc-status"]);
        message = decodeURIComponent(String(headers["grpc-message"] ?? ""));
      } else if (headers[":status"] !== undefined) {
        status = `http ${headers[":status"]}`;
      }
    };
    stream.on("response", read);
    stream.on("trailers", read);
    stream.on("data", () => {});
    stream.on("error", () => {});
    stream.on("close", () => {
      clearTimeout(timer);
      resolve({ status, message });
    });
    stream.end(body);
  });
}

/** Random bytes on a raw TCP connection, sometimes after an HTTP/2 preface. */
async function rawBytes(address: string, bytes: Uint8Array): Promise<void> {
  const [hostname, port] = address.split(":") as [string, string];
  let conn: Deno.TcpConn | undefined;
  try {
    conn = await Deno.connect({ hostname, port: Number(port) });
    await conn.write(bytes);
    // Read whatever comes back for a moment, then hang up.
    const buffer = new Uint8Array(1024);
    await Promise.race([
      conn.read(buffer).catch(() => null),
      new Promise((resolve) => setTimeout(resolve, 20)),
    ]);
  } catch {
    // Reset by the server: fine.
  } finally {
    try {
      conn?.close();
    } catch {
      // Already closed.
    }
  }
}

const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

function framed(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + body.length);
  new DataView(out.buffer).setUint32(1, body.length);
  out.set(body, 5);
  return out;
}

/** Runs the tasks, `CONCURRENCY` at a time. */
async function runAll(tasks: (() => Promise<void>)[]): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < tasks.length) await tasks[next++]!();
    }),
  );
}

/** The codes a call may end with; anything else is a bug. */
const ALLOWED = new Set<Code | "ok">([
  "ok",
  Code.InvalidArgument,
  Code.Unauthenticated,
  Code.ResourceExhausted,
  Code.Unavailable,
  Code.DeadlineExceeded,
]);

Deno.test("fuzz: 10,000+ random requests leave register and service correct", async () => {
  const seed = Number(Deno.env.get("WSGATE_FUZZ_SEED") ?? Date.now() % 2 ** 31);
  console.log(`fuzz seed ${seed} (set WSGATE_FUZZ_SEED=${seed} to replay)`);
  await using register = await startLocalRegister({
    secret: SECRET,
    logLevel: "error",
  });
  const registerAddress = register.address;
  const options = localServiceOptions(registerAddress, {
    secret: SECRET,
    deadlineMs: 2000,
    maxPeerQueueBytes: 1 << 20,
    logLevel: "error",
  });
  await using a = await startService(greeter, options);
  await using b = await startService(greeter, options);
  // Real clients, three on each service. The fuzz closes some (close
  // requests with their ids): each slot then reconnects, so that there are
  // always live clients for requests to bind, group, inform and message.
  const clients: TestClient[] = [];
  const real = { clientIds: [] as string[], nodeIds: [a.nodeId, b.nodeId] };
  let churning = true;
  async function keepConnected(service: Service, slot: number): Promise<void> {
    while (churning) {
      const client = await TestClient.connect(service.port);
      clients.push(client);
      real.clientIds[slot] = client.id;
      if (!churning) await client.close();
      await client.closed;
    }
  }
  const slots = [a, b, a, b, a, b].map(keepConnected);
  const channels: TestChannel[] = [];
  try {
    await untilClientCount(a.api, 6, "a sees every client");
    const fuzz = new Fuzzer(
      seed,
      real,
      new Set([a.rpcAddress, b.rpcAddress, registerAddress]),
    );

    // As a node: node proofs reach every method and scope (a backend's
    // bearer secret reaches only cluster scope).
    const good = dial(a.rpcAddress, {
      node: { secret: SECRET, role: "peer" },
    });
    const bad = dial(a.rpcAddress, { secret: "not it" });
    const goodRegister = dial(registerAddress, {
      node: { secret: SECRET, role: "register" },
    });
    // The proof a peer's hello carries, from a's challenge.
    const proofChannel = openRpcChannel(a.rpcAddress, {
      secret: SECRET,
      pingIntervalMs: 1000,
      pingTimeoutMs: 2000,
    });
    const token = nodeTokenOf((await proofChannel.authorization())!);
    proofChannel.close();
    const badRegister = dial(registerAddress, {});
    channels.push(good, bad, goodRegister, badRegister);
    const session = http2.connect(`http://${a.rpcAddress}`);
    session.on("error", () => {});
    const registerSession = http2.connect(`http://${registerAddress}`);
    registerSession.on("error", () => {});

    const codes = new Map<string, number>();
    const strange: string[] = [];
    let requests = 0;
    const record = (what: string, code: Code | "ok") => {
      const name = code === "ok" ? "ok" : Code[code];
      codes.set(name, (codes.get(name) ?? 0) + 1);
      if (!ALLOWED.has(code) && strange.length < 20) {
        strange.push(`${what}: ${name}`);
      }
    };

    const unary = GatewayService.methods.filter((m) =>
      m.methodKind === "unary"
    );
    const deliver = GatewayService.method.deliver;
    const tasks: (() => Promise<void>)[] = [];
    // GatewayService, every unary method, mostly with the secret.
    for (let i = 0; i < 8000; i++) {
      const method = unary[i % unary.length]!;
      tasks.push(async () => {
        const channel = fuzz.chance(0.05) ? bad : good;
        requests++;
        const request = fuzz.message(method.input);
        // A fence redirects sends to its clientId: spared like a close.
        fuzz.spare(
          method.name === "CloseClient" || method.name === "FenceSession"
            ? request
            : undefined,
        );
        record(
          method.name,
          await codeOf(callMethod(channel.transport, method, [request])),
        );
      });
    }
    // The Deliver stream: streams of 1 to 8 random batches.
    for (let i = 0; i < 300; i++) {
      tasks.push(async () => {
        const batches = Array.from(
          { length: 1 + fuzz.int(8) },
          () => fuzz.message(deliver.input),
        );
        for (const batch of batches) {
          const deliveries = (batch.deliveries ?? []) as {
            target?: { case?: string; value?: Record<string, unknown> };
          }[];
          for (const d of deliveries) {
            fuzz.spare(d.target?.case === "close" ? d.target.value : undefined);
          }
        }
        requests += batches.length;
        const channel = fuzz.chance(0.05) ? bad : good;
        record(
          "Deliver",
          await codeOf(callMethod(channel.transport, deliver, batches)),
        );
      });
    }
    // RegisterService: Join (some members valid-looking) and ListMembers.
    for (let i = 0; i < 800; i++) {
      const method: DescMethod = i % 2 === 0
        ? RegisterService.method.join
        : RegisterService.method.listMembers;
      tasks.push(async () => {
        const request = fuzz.message(method.input);
        const member = request.member as Record<string, unknown> | undefined;
        if (member !== undefined && fuzz.chance(0.3)) {
          member.nodeId = fuzz.nodeId();
          member.rpcAddress = `127.0.0.1:${1 + fuzz.int(65535)}`;
        }
        if (
          member !== undefined && fuzz.taken.has(String(member.rpcAddress))
        ) {
          member.rpcAddress = "127.0.0.1:1";
        }
        requests++;
        const channel = fuzz.chance(0.05) ? badRegister : goodRegister;
        record(
          method.name,
          await codeOf(callMethod(channel.transport, method, [request], 3000)),
        );
      });
    }
    // Garbage bodies for every method of both services.
    const paths = [
      ...GatewayService.methods.map((m) =>
        `/${GatewayService.typeName}/${m.name}`
      ),
      ...RegisterService.methods.map((m) =>
        `/${RegisterService.typeName}/${m.name}`
      ),
      "/websocket.v1.Nope/Nothing",
    ];
    for (let i = 0; i < 600; i++) {
      tasks.push(async () => {
        const path = fuzz.pick(paths);
        const raw = fuzz.bytes(fuzz.chance(0.1) ? 20_000 : 200);
        const body = fuzz.chance(0.7) ? framed(raw) : raw;
        requests++;
        const target = path.includes("Register") ? registerSession : session;
        const { status, message } = await garbageCall(target, path, body);
        codes.set(
          `garbage ${status}`,
          (codes.get(`garbage ${status}`) ?? 0) + 1,
        );
        // What a body that is not a message may get: the message parsed
        // by chance (0, or as any other request: 3, 14, 16), too large (8),
        // not protobuf (13 "parse binary: ...", as every gRPC server
        // answers), a torn envelope (3 or 12 "protocol error: ..."), a
        // compressed message on a call without grpc-encoding (13
        // "protocol error: ...", as the gRPC spec says); an unknown path
        // gets HTTP 404.
        const fine = ["0", "3", "8", "14", "16"].includes(status) ||
          (status === "13" && message.startsWith("parse binary")) ||
          (["12", "13"].includes(status) &&
            message.startsWith("protocol error")) ||
          (status === "http 404" && path.includes("Nope"));
        if (!fine && strange.length < 20) {
          strange.push(`garbage ${path}: ${status} ${message}`);
        }
      });
    }
    // Raw bytes on the RPC ports, and on the delivery port (there half of
    // them after a good hello, so that the batch framing gets them).
    const deliveryAddress = `127.0.0.1:${a.deliveryPort}`;
    for (let i = 0; i < 600; i++) {
      tasks.push(async () => {
        const noise = fuzz.bytes(fuzz.chance(0.1) ? 16_384 : 256);
        const prefix = i % 3 === 2
          ? encodeHello(
            fuzz.chance(0.8) ? token : "not it",
            // Half of them version 3, naming a connection of one sender.
            fuzz.chance(0.5)
              ? { sender: "fuzz", seq: 1 + fuzz.int(50) }
              : undefined,
          )
          : PREFACE;
        const bytes = fuzz.chance(0.5)
          ? new Uint8Array([...prefix, ...noise])
          : noise;
        requests++;
        await rawBytes(
          [a.rpcAddress, registerAddress, deliveryAddress][i % 3]!,
          bytes,
        );
      });
    }
    // Shuffle, so that every kind runs beside every other.
    for (let i = tasks.length - 1; i > 0; i--) {
      const j = fuzz.int(i + 1);
      [tasks[i], tasks[j]] = [tasks[j]!, tasks[i]!];
    }
    await runAll(tasks);
    session.close();
    registerSession.close();
    console.log(
      `fuzz: ${requests} requests; codes ${
        JSON.stringify(Object.fromEntries(codes))
      }`,
    );
    assert.ok(requests >= 10_000, `only ${requests} requests`);
    assert.deepEqual(strange, [], "calls ended with an ill-defined status");

    // The register lists exactly the two real services again.
    await eventually("the fake members are gone", async () => {
      const ids = (await memberIdsVia(goodRegister.transport)).sort();
      return JSON.stringify(ids) ===
        JSON.stringify([a.nodeId, b.nodeId].sort());
    });
    console.log(
      `fuzz: ${clients.length} real clients took part, ${
        clients.filter((c) => c.socket.readyState === WebSocket.OPEN).length
      } still open with ${(await a.api.getAllUid()).length} uids, ${
        (await a.api.getAllGroups()).length
      } groups, ${
        Object.values(await a.api.getAllClientInfos()).filter((info) =>
          Object.keys(info).length > 0
        ).length
      } info maps`,
    );
    await checkStillCorrect(a, b, clients, async () => {
      churning = false;
      await Promise.all(clients.map((c) => c.close()));
      await Promise.all(slots);
    });
  } finally {
    churning = false;
    for (const channel of channels) channel.close();
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(slots);
  }
});

/**
 * Both services answer correctly, and once every client is gone nothing is
 * left: no clients, uids, groups or infos.
 */
async function checkStillCorrect(
  a: Service,
  b: Service,
  old: TestClient[],
  closeOld: () => Promise<void>,
): Promise<void> {
  // Clients the fuzz closed are gone; the others are all still counted.
  await eventually("closed clients are gone", async () => {
    const open = old.filter((c) => c.socket.readyState === WebSocket.OPEN);
    const ids = open.map((c) => c.id).sort();
    return JSON.stringify((await a.api.getAllClientIds()).sort()) ===
        JSON.stringify(ids) &&
      JSON.stringify((await b.api.getAllClientIds()).sort()) ===
        JSON.stringify(ids);
  });
  const fresh = [
    await TestClient.connect(a.port),
    await TestClient.connect(b.port),
  ];
  const [onA, onB] = fresh as [TestClient, TestClient];
  await a.api.bindUid(onB.id, "fresh");
  await b.api.joinGroup(onA.id, "fresh group");
  await a.api.setInfo(onB.id, { k: "v" });
  assert.deepEqual(await b.api.getClientIdsByUid("fresh"), [onB.id]);
  assert.deepEqual(await a.api.getClientIdsByGroup("fresh group"), [onA.id]);
  assert.deepEqual(await b.api.getInfo(onB.id), { k: "v" });
  await a.api.sendToUid("fresh", "to uid");
  assert.equal(await onB.next(), "to uid");
  await b.api.sendToGroup("fresh group", "to group");
  assert.equal(await onA.next(), "to group");
  using channel = dial(b.rpcAddress, { secret: SECRET });
  assert.equal(
    await codeOf(
      callMethod(channel.transport, GatewayService.method.sendToClient, [{
        clientId: onA.id,
        payload: { body: { case: "text", value: "via rpc" } },
      }]),
    ),
    "ok",
  );
  assert.equal(await onA.next(), "via rpc");

  await closeOld();
  await Promise.all(fresh.map((c) => c.close()));
  for (const service of [a, b]) {
    await eventually("every index is empty", async () => {
      const api = service.api;
      return (await api.getAllClientCount()) === 0 &&
        (await api.getAllUid()).length === 0 &&
        (await api.getAllGroups()).length === 0 &&
        Object.keys(await api.getAllClientInfos()).length === 0;
    });
  }
}
