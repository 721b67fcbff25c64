// The worked gRPC call of docs/grpc.md, run as written there: its `buf
// curl` commands, with the test cluster's RPC address in place of
// 127.0.0.1:9101 and its secret in place of $SECRET, reach a client bound to
// the uid and count it; a wrong bearer is refused.

import assert from "node:assert/strict";
import { startService } from "../mod.ts";
import relay from "./fixtures/relay_app.ts";
import { TestClient } from "./helpers/clients.ts";
import {
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";

const root = new URL("..", import.meta.url);
const DOC_ADDRESS = "127.0.0.1:9101";
const SECRET = "grpc-curl-test-secret";

/** The words of one shell command: quotes, `$SECRET` and `\` newlines. */
function words(command: string, secret: string): string[] {
  const out: string[] = [];
  const pattern = /'([^']*)'|"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (const [, single, double, bare] of command.matchAll(pattern)) {
    const word = single ?? double?.replaceAll("$SECRET", secret) ?? bare!;
    out.push(word);
  }
  return out;
}

/** The `deno run … buf … curl` commands of the doc's `buf curl` block. */
async function docCommands(): Promise<string[]> {
  const doc = await Deno.readTextFile(new URL("docs/grpc.md", root));
  const block = [...doc.matchAll(/```sh\n([\s\S]*?)```/g)]
    .map((m) => m[1]!)
    .find((text) => text.includes("npm:@bufbuild/buf@"));
  assert.ok(block !== undefined, "docs/grpc.md has no buf curl block");
  const commands = block.replaceAll("\\\n", " ").split("\n")
    .filter((line) => line.startsWith("deno run"));
  assert.equal(commands.length, 2, block);
  return commands;
}

/** Runs a doc command against `address`; resolves with what it printed. */
async function run(
  command: string,
  address: string,
  secret: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const [deno, ...args] = words(command.replace(DOC_ADDRESS, address), secret);
  assert.equal(deno, "deno");
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: root.pathname,
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code,
    stdout: decoder.decode(stdout),
    stderr: decoder.decode(stderr),
  };
}

Deno.test("docs/grpc.md: its buf curl commands push to a uid and count clients", async (t) => {
  const [send, count] = await docCommands();
  assert.ok(
    send!.includes("SendToUid") && count!.includes("GetAllClientCount"),
  );
  assert.ok(send!.includes(DOC_ADDRESS) && send!.includes("$SECRET"));
  await using register = await startLocalRegister({ secret: SECRET });
  await using service = await startService(
    relay,
    localServiceOptions(register.address, { secret: SECRET }),
  );
  await using alice = await TestClient.connect(service.port, "/?uid=alice");

  await t.step("SendToUid reaches the client of the uid", async () => {
    const { code, stdout, stderr } = await run(
      send!,
      service.rpcAddress,
      SECRET,
    );
    assert.equal(code, 0, stderr);
    assert.deepEqual(JSON.parse(stdout), {});
    assert.equal(await alice.next(), "hello from buf");
  });

  await t.step("GetAllClientCount counts it", async () => {
    const { code, stdout, stderr } = await run(
      count!,
      service.rpcAddress,
      SECRET,
    );
    assert.equal(code, 0, stderr);
    assert.deepEqual(JSON.parse(stdout), { count: "1" });
  });

  await t.step("a wrong bearer is refused, and nothing is sent", async () => {
    const { code, stdout, stderr } = await run(
      send!,
      service.rpcAddress,
      "not-the-secret",
    );
    assert.notEqual(code, 0);
    assert.equal(stdout, "");
    assert.equal(JSON.parse(stderr).code, "unauthenticated");
    // What the client gets next is the echo, not a late "hello from buf".
    alice.socket.send("ping");
    assert.equal(await alice.next(), "echo:ping");
  });
});
