// `deno task demo --port 0` moves every port the demo opens: two demos at
// once both come up, each a cluster of its own (a register and two chat
// services) on free ports, and print the addresses they really listen on.

import assert from "node:assert/strict";
import { Child } from "./helpers/processes.ts";

/** What one demo printed, and a way to stop it as Ctrl-C does. */
interface Demo {
  readonly output: string;
  readonly a: URL;
  readonly b: URL;
  readonly rpc: readonly string[];
  readonly register: string;
  readonly health: URL;
  stop(): Promise<number>;
}

/** `deno task demo --port 0` (examples/chat/demo.ts), until it is up. */
async function startDemo(): Promise<Demo> {
  const child = await Child.start("examples/chat/demo.ts", [
    "--port",
    "0",
    "--log-level",
    "warn",
  ]);
  while (!child.output.some((line) => line.includes("Ctrl-C"))) {
    if (await child.nextLine() === undefined) break;
  }
  const output = [child.first, ...child.output].join("\n");
  const match = (pattern: RegExp) => {
    const found = pattern.exec(output);
    assert.ok(found !== null, `${pattern} in:\n${output}`);
    return found[1]!;
  };
  return {
    output,
    a: new URL(match(/service A\s+(http:\/\/\S+)/)),
    b: new URL(match(/service B\s+(http:\/\/\S+)/)),
    rpc: [
      match(/service A\s+\S+\s+\(rpc (\S+)\)/),
      match(/service B\s+\S+\s+\(rpc (\S+)\)/),
    ],
    register: match(/^\s*register\s+(\S+)\s+\(health/m),
    health: new URL(match(/health: (http:\/\/\S+)\)/)),
    async stop() {
      return (await child.stop("SIGINT")).code;
    },
  };
}

/** The port of `host:port`. */
function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

Deno.test("demo --port 0 twice at once: both come up on free ports and serve", async () => {
  const started = await Promise.allSettled([startDemo(), startDemo()]);
  const demos = started.flatMap((r) =>
    r.status === "fulfilled" ? [r.value] : []
  );
  try {
    for (const result of started) {
      if (result.status === "rejected") throw result.reason;
    }
    const ports = demos.flatMap((d) => [
      Number(d.a.port),
      Number(d.b.port),
      ...d.rpc.map(portOf),
      portOf(d.register),
      Number(d.health.port),
    ]);
    assert.equal(ports.length, 12);
    assert.ok(ports.every((p) => p > 0), `real ports: ${ports}`);
    assert.equal(new Set(ports).size, 12, `every port its own: ${ports}`);

    for (const [i, demo] of demos.entries()) {
      for (const page of [demo.a, demo.b]) {
        const response = await fetch(page);
        assert.equal(response.status, 200, `demo ${i}: ${page}`);
        assert.match(await response.text(), /<html/i);
        // Each demo is a cluster of its own: its two services, no more.
        const health = await fetch(new URL("/healthz", page));
        const body = await health.json();
        assert.equal(body.status, "ready");
        assert.equal(body.members, 2, `demo ${i}: ${JSON.stringify(body)}`);
      }
      const register = await fetch(demo.health);
      assert.equal(register.status, 200);
      assert.equal((await register.json()).members, 2);
    }
  } finally {
    const codes = await Promise.all(demos.map((d) => d.stop()));
    assert.deepEqual(codes, demos.map(() => 0), "Ctrl-C stops each cleanly");
  }
});
