// Test helpers for raw gRPC: a Connect transport to a register or service
// with any (or no) secret and TLS settings, generic calls of any method of a
// service descriptor, the questions tests ask most (members, client count),
// and certificates made with openssl.

import type {
  DescMessage,
  DescMethod,
  DescMethodStreaming,
  DescMethodUnary,
  MessageInitShape,
} from "@bufbuild/protobuf";
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Http2Connection } from "../../internal/grpc/http2_connection.ts";
import { openRpcChannel } from "../../internal/grpc/rpc_channel.ts";
import { GatewayService } from "../../proto/gen/websocket/v1/gateway_pb.ts";
import { RegisterService } from "../../proto/gen/websocket/v1/register_pb.ts";

/** How a test client dials. */
export interface DialOptions {
  /** Sent as `authorization: Bearer <secret>`; `null` sends no header. */
  secret?: string | null;
  /**
   * Dial as a node of the cluster would: prove this secret with the
   * challenge (internal/base/node_proof.ts) instead of sending it, to a
   * register (`role: "register"`) or a service.
   */
  node?: { secret: string; role: "peer" | "register" };
  /** A raw authorization header value, instead of `secret`. */
  authorization?: string;
  /** Dial with TLS, with these (PEM). */
  tls?: { ca?: string; cert?: string; key?: string };
}

/** A transport and a way to close its connection. */
export interface TestChannel extends Disposable {
  readonly transport: Transport;
  close(): void;
}

/** A Connect gRPC transport to `address` (`host:port`). */
export function dial(address: string, options: DialOptions = {}): TestChannel {
  if (options.node !== undefined) {
    const channel = openRpcChannel(address, {
      ...options.node,
      pingIntervalMs: 1000,
      pingTimeoutMs: 2000,
    });
    const close = () => channel.close();
    return {
      transport: channel.transport,
      close,
      [Symbol.dispose]: close,
    };
  }
  const baseUrl = `${
    options.tls === undefined ? "http" : "https"
  }://${address}`;
  const connection = new Http2Connection(baseUrl, {
    pingIntervalMs: 1000,
    pingTimeoutMs: 2000,
    sessionOptions: options.tls ?? {},
  });
  const header = options.authorization ??
    (typeof options.secret === "string"
      ? `Bearer ${options.secret}`
      : undefined);
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager: connection,
    interceptors: header === undefined ? [] : [(next) => (req) => {
      req.header.set("authorization", header);
      return next(req);
    }],
  });
  const close = () => connection.close();
  return { transport, close, [Symbol.dispose]: close };
}

/**
 * Calls any method: a unary one with `requests[0]`, a streaming one with all
 * of `requests`. Resolves with every response message.
 */
export async function callMethod(
  transport: Transport,
  method: DescMethod,
  requests: readonly object[],
  timeoutMs = 5000,
): Promise<unknown[]> {
  const messages = requests as MessageInitShape<DescMessage>[];
  if (method.methodKind === "unary") {
    const res = await transport.unary(
      method as DescMethodUnary,
      undefined,
      timeoutMs,
      undefined,
      messages[0] ?? {},
    );
    return [res.message];
  }
  const input = method.methodKind === "server_streaming"
    ? [messages[0] ?? {}]
    : messages;
  const controller = new AbortController();
  const res = await transport.stream(
    method as DescMethodStreaming,
    controller.signal,
    timeoutMs,
    undefined,
    (async function* () {
      yield* input;
    })(),
  );
  const out: unknown[] = [];
  try {
    for await (const message of res.message) {
      out.push(message);
      // A server stream that never ends (Join): one answer tells enough.
      if (method.methodKind === "server_streaming") break;
    }
  } finally {
    controller.abort();
  }
  return out;
}

/** The gRPC code a call failed with, or "ok". */
export async function codeOf(call: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await call;
    return "ok";
  } catch (error) {
    return ConnectError.from(error).code;
  }
}

export { Code };

/** The node ids a register lists, asked through `transport`. */
export async function memberIdsVia(transport: Transport): Promise<string[]> {
  const [answer] = await callMethod(
    transport,
    RegisterService.method.listMembers,
    [{}],
  ) as [{ members: { members: { nodeId: string }[] } }];
  return answer.members.members.map((m) => m.nodeId);
}

/** The node ids the register at `address` lists. */
export async function registerMembers(
  address: string,
  options: DialOptions = {},
): Promise<string[]> {
  using channel = dial(address, options);
  return await memberIdsVia(channel.transport);
}

/** The cluster-wide client count, as the service at `address` answers it. */
export async function clientCountVia(
  address: string,
  options: DialOptions = {},
): Promise<number> {
  using channel = dial(address, options);
  const [answer] = await callMethod(
    channel.transport,
    GatewayService.method.getAllClientCount,
    [{}],
  ) as [{ count: bigint }];
  return Number(answer.count);
}

/** Certificates for a test cluster, PEM, and the files they are in. */
export interface TestCertificates {
  readonly dir: string;
  /** The CA that signed `node` and `client`. */
  readonly ca: string;
  /** A node certificate for 127.0.0.1 (server and client use). */
  readonly node: { cert: string; key: string };
  /** A client-only certificate from the same CA. */
  readonly client: { cert: string; key: string };
  /** A certificate for 127.0.0.1 from another, untrusted CA. */
  readonly stranger: { cert: string; key: string };
  /** File paths of the same, for command lines. */
  readonly files: {
    ca: string;
    nodeCert: string;
    nodeKey: string;
    strangerCert: string;
    strangerKey: string;
  };
  /** Removes the directory. */
  remove(): Promise<void>;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  const { code, stderr } = await new Deno.Command("openssl", {
    args,
    cwd: dir,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    throw new Error(
      `openssl ${args[0]} failed: ${new TextDecoder().decode(stderr)}`,
    );
  }
}

/** Makes a CA, a node and a client certificate, and a stranger's, with openssl. */
export async function makeCertificates(): Promise<TestCertificates> {
  const dir = await Deno.makeTempDir({ prefix: "wsgate-tls-" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
  const selfSigned = (name: string, cn: string) =>
    openssl(dir, [
      "req",
      "-x509",
      ...ec,
      "-nodes",
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.pem`,
      "-days",
      "2",
      "-subj",
      `/CN=${cn}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ]);
  const signed = async (name: string, ca: string, ext: string) => {
    await Deno.writeTextFile(`${dir}/${name}.ext`, ext);
    await openssl(dir, [
      "req",
      ...ec,
      "-nodes",
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      `/CN=${name}`,
    ]);
    await openssl(dir, [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      `${ca}.pem`,
      "-CAkey",
      `${ca}.key`,
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "2",
      "-extfile",
      `${name}.ext`,
    ]);
  };
  await selfSigned("ca", "wsgate test CA");
  await selfSigned("other-ca", "untrusted test CA");
  const nodeExt =
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n";
  await signed("node", "ca", nodeExt);
  await signed("client", "ca", "extendedKeyUsage=clientAuth\n");
  await signed("stranger", "other-ca", nodeExt);
  const read = (name: string) => Deno.readTextFile(`${dir}/${name}`);
  return {
    dir,
    ca: await read("ca.pem"),
    node: { cert: await read("node.pem"), key: await read("node.key") },
    client: { cert: await read("client.pem"), key: await read("client.key") },
    stranger: {
      cert: await read("stranger.pem"),
      key: await read("stranger.key"),
    },
    files: {
      ca: `${dir}/ca.pem`,
      nodeCert: `${dir}/node.pem`,
      nodeKey: `${dir}/node.key`,
      strangerCert: `${dir}/stranger.pem`,
      strangerKey: `${dir}/stranger.key`,
    },
    remove: () => Deno.remove(dir, { recursive: true }),
  };
}
