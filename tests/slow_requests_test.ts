// Strangers that open connections and never finish a request cannot hold
// a service's WebSocket port or a register's operator port: an unfinished
// request is closed after the header timeout (trickling bytes does not
// extend it), at most maxPendingConnections wait (past it the oldest is
// closed), and running out of file descriptors makes the server retry its
// accepts rather than exit. Real clients connect all along.

import assert from "node:assert/strict";
import { TestClient } from "./helpers/clients.ts";
import {
  parseReadyLine,
  serviceArgs,
  startLabService,
  startRegisterProcess,
} from "./helpers/processes.ts";
import { scrape } from "./helpers/prometheus.ts";
import { splitLines } from "./helpers/lines.ts";

const encoder = new TextEncoder();

/** Opens `count` connections that each send the start of a request. */
async function openUnfinished(port: number, count: number) {
  const conns: Deno.TcpConn[] = [];
  for (let i = 0; i < count; i++) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(encoder.encode(`GET /${i} HTTP/1.1\r\nHost: x\r\n`));
    conns.push(conn);
  }
  return conns;
}

/**
 * Resolves with when each connection was closed by the server (ms since
 * `since`), or Infinity if it was still open after `timeoutMs`.
 */
function closedAt(
  conns: Deno.TcpConn[],
  since: number,
  timeoutMs: number,
): Promise<number[]> {
  return Promise.all(conns.map(async (conn) => {
    const buffer = new Uint8Array(1024);
    const timer = setTimeout(() => conn.close(), timeoutMs);
    try {
      while (await conn.read(buffer) !== null) {
        // An answer (408, say) may come before the end.
      }
      return Date.now() - since;
    } catch {
      return Infinity; // closed here: the server never closed it
    } finally {
      clearTimeout(timer);
      try {
        conn.close();
      } catch {
        // Closed already.
      }
    }
  }));
}

/** The lab's echo answers: the port serves real clients. */
async function echoes(port: number): Promise<void> {
  await using client = await TestClient.connect(port);
  client.socket.send("hi");
  assert.equal(await client.next(), "echo:hi");
}

Deno.test("the WebSocket port closes unfinished requests and bounds them", async (t) => {
  const register = await startRegisterProcess();
  try {
    await t.step(
      "3,000 unfinished requests close within the header timeout",
      async () => {
        const service = await startLabService(register.address, [
          "--header-timeout-ms",
          "2000",
          "--max-pending-connections",
          "5000", // the timeout, not the bound, must close them
        ]);
        try {
          const port = service.info.port;
          const since = Date.now();
          const conns = await openUnfinished(port, 3000);
          const closing = closedAt(conns, since, 15_000);
          await echoes(port); // meanwhile, a real client
          const at = await closing;
          const last = Math.max(...at);
          console.log(
            `3000 unfinished requests, the last closed after ${last} ms`,
          );
          assert.ok(last <= 2000 + 4000, `the last closed after ${last} ms`);
          assert.ok(Math.min(...at) >= 1500, "none closed long before");
          const metrics = await scrape(`http://127.0.0.1:${port}/metrics`);
          assert.equal(
            metrics.value("wsgate_http_header_timeouts_total"),
            3000,
          );
          await echoes(port);
        } finally {
          await service.child.stop();
        }
      },
    );

    await t.step(
      "trickled header bytes do not extend the timeout",
      async () => {
        const service = await startLabService(register.address, [
          "--header-timeout-ms",
          "1500",
        ]);
        try {
          const conn = await Deno.connect({
            hostname: "127.0.0.1",
            port: service.info.port,
          });
          const since = Date.now();
          const closing = closedAt([conn], since, 10_000);
          const trickle = (async () => {
            try {
              for (const byte of encoder.encode("GET / HTTP/1.1\r\nHost: x")) {
                await conn.write(new Uint8Array([byte]));
                await new Promise((resolve) => setTimeout(resolve, 250));
              }
            } catch {
              // Closed by the service.
            }
          })();
          const [at] = await closing;
          await trickle;
          assert.ok(at! >= 1400 && at! <= 4000, `closed after ${at} ms`);
        } finally {
          await service.child.stop();
        }
      },
    );

    await t.step(
      "past maxPendingConnections the oldest close at once",
      async () => {
        const service = await startLabService(register.address, [
          "--max-pending-connections",
          "100",
        ]);
        try {
          const port = service.info.port;
          const since = Date.now();
          const conns = await openUnfinished(port, 300);
          const closing = closedAt(conns.slice(0, 200), since, 5000);
          await echoes(port);
          const at = await closing;
          assert.ok(at.every((ms) => ms < 5000), "the 200 oldest were closed");
          const metrics = await scrape(`http://127.0.0.1:${port}/metrics`);
          assert.ok(metrics.value("wsgate_http_pending_shed_total") >= 200);
          for (const conn of conns.slice(200)) conn.close();
        } finally {
          await service.child.stop();
        }
      },
    );

    await t.step(
      "out of file descriptors, the service retries and lives",
      async () => {
        // A service with 256 descriptors at most, sent 400 connections.
        const process = new Deno.Command("prlimit", {
          args: [
            "--nofile=256",
            Deno.execPath(),
            "run",
            "-A",
            "--preload",
            new URL("./helpers/exit_with_parent.ts", import.meta.url).pathname,
            "service.ts",
            ...serviceArgs("tests/fixtures/lab_app.ts", register.address),
          ],
          cwd: new URL("..", import.meta.url).pathname,
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const lines = process.stdout.pipeThrough(new TextDecoderStream())
          .pipeThrough(splitLines()).getReader();
        const stderr = new Response(process.stderr).text();
        try {
          const first = await lines.read();
          const { port } = parseReadyLine(String(first.value));
          const conns = await openUnfinished(port, 400);
          // Some of them took the last descriptors; the rest wait in the
          // kernel's backlog, and each failed accept made room.
          await echoes(port);
          for (const conn of conns) conn.close();
          await echoes(port);
          const metrics = await scrape(`http://127.0.0.1:${port}/metrics`);
          assert.ok(metrics.value("wsgate_http_accept_errors_total") > 0);
        } finally {
          process.kill("SIGTERM");
          while (!(await lines.read()).done) {
            // Until the service's last line.
          }
          const status = await process.status;
          const text = await stderr;
          assert.equal(status.code, 0, text);
          assert.match(text, /could not accept a connection; retrying/);
        }
      },
    );
  } finally {
    await register.child.stop();
  }
});

Deno.test("the register's operator port closes unfinished requests", async () => {
  const register = await startRegisterProcess(["--http-port", "0"]);
  try {
    const line = await register.child.nextLine();
    const port = Number(/:(\d+)\/healthz/.exec(line ?? "")?.[1]);
    assert.ok(port > 0, `no operator port in ${line}`);
    const since = Date.now();
    const conns = await openUnfinished(port, 300);
    const closing = closedAt(conns, since, 20_000);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(health.status, 200);
    await health.body?.cancel();
    const at = await closing;
    // 300 is past its bound of 256: the oldest closed at once, the rest
    // after its header timeout of 10 s.
    assert.ok(at.filter((ms) => ms < 5000).length >= 44, "the oldest shed");
    assert.ok(Math.max(...at) <= 10_000 + 4000, `${Math.max(...at)} ms`);
  } finally {
    await register.child.stop();
  }
});
