// The register's dashboard without a browser: `GET /dashboard/state` (its
// JSON, its token), `GET /` (the page and its headers), the reports that
// services send over their register links, and a member that sends none.

import assert from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import {
  type Application,
  type Register,
  type Service,
  startRegister,
  startService,
} from "../mod.ts";
import {
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import { eventually } from "./helpers/waits.ts";
import { Code, codeOf, dial, makeCertificates } from "./helpers/rpc.ts";
import { Child } from "./helpers/processes.ts";
import { RegisterService } from "../proto/gen/websocket/v1/register_pb.ts";
import { createNodeId } from "../internal/hub/client_id.ts";
import type {
  DashboardState,
  ServiceView,
} from "../internal/dashboard/dashboard_state.ts";

const INTERVAL_MS = 200;

/** Sends every message back to its sender. */
const echo: Application = {
  onMessage(clientId, message, { api }) {
    return api.sendToClient(clientId, message);
  },
};

function stateUrl(register: Register): string {
  return `http://127.0.0.1:${register.httpPort}/dashboard/state`;
}

async function getState(
  register: Register,
  token?: string,
): Promise<DashboardState> {
  const response = await fetch(stateUrl(register), {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
  assert.equal(response.status, 200);
  return await response.json();
}

/** The status and error code of a refused state request. */
async function refusal(
  register: Register,
  authorization?: string,
): Promise<{ status: number; code: string; message: string }> {
  const response = await fetch(stateUrl(register), {
    headers: authorization === undefined ? {} : { authorization },
  });
  const body = await response.json();
  return { status: response.status, ...body.error };
}

/** A service's view in `state`, by name. */
function viewOf(state: DashboardState, name: string): ServiceView | undefined {
  return state.services.find((s) => s.name === name);
}

async function open(service: Service): Promise<WebSocket> {
  const socket = new WebSocket(`ws://127.0.0.1:${service.port}/`);
  await new Promise<void>((resolve, reject) => {
    socket.onopen = () => resolve();
    socket.onerror = () => reject(new Error("client did not connect"));
  });
  return socket;
}

async function shut(socket: WebSocket): Promise<void> {
  if (socket.readyState === WebSocket.CLOSED) return;
  const closed = new Promise((resolve) => socket.onclose = resolve);
  socket.close();
  await closed;
}

Deno.test("dashboard state: what two services report, as JSON", async (t) => {
  await using register = await startLocalRegister({
    httpPort: 0,
    statsIntervalMs: INTERVAL_MS,
  });
  const options = localServiceOptions(register.address);
  await using alpha = await startService(echo, { ...options, name: "alpha" });
  const beta = await startService(echo, { ...options, name: "beta" });
  const sockets = [await open(alpha), await open(alpha), await open(beta)];
  try {
    await t.step("client counts and counters per service", async () => {
      let echoed = 0;
      sockets[0]!.onmessage = () => echoed++;
      for (let i = 0; i < 5; i++) sockets[0]!.send(`m${i}`);
      await eventually("the echoes are back", () => echoed === 5);
      let state: DashboardState | undefined;
      await eventually("both services report their figures", async () => {
        state = await getState(register);
        return viewOf(state, "alpha")?.messagesOut === 5 &&
          viewOf(state, "beta")?.clients === 1 &&
          viewOf(state, "alpha")?.clients === 2;
      });
      const a = viewOf(state!, "alpha")!;
      assert.equal(a.nodeId, alpha.nodeId);
      assert.equal(a.rpcAddress, alpha.rpcAddress);
      assert.equal(a.websocketAddress, `127.0.0.1:${alpha.port}`);
      assert.equal(a.state, "ready");
      assert.equal(a.messagesIn, 5);
      assert.equal(a.uids, 0);
      assert.equal(a.groups, 0);
      assert.ok(a.uptimeMs !== null && a.uptimeMs > 0);
      assert.ok(a.reportAgeMs !== null && a.reportAgeMs < 10_000);
      assert.ok(a.rssBytes !== null && a.rssBytes > 0);
      assert.deepEqual(a.closes, {
        slowConsumer: 0,
        rateLimit: 0,
        tooBig: 0,
        protocolError: 0,
      });
      assert.equal(typeof a.peerDelivery.count, "number");
      assert.ok(Array.isArray(a.history.messagesInPerSec));
      assert.equal(
        a.history.messagesInPerSec.length,
        a.history.messagesOutPerSec.length,
      );

      const s = state!;
      assert.equal(s.version, 1);
      assert.equal(s.intervalMs, INTERVAL_MS);
      assert.equal(s.totals.services, 2);
      assert.equal(s.totals.clients, 3);
      assert.equal(s.omittedServices, 0);
      assert.deepEqual(s.services.map((v) => v.name), ["alpha", "beta"]);
      assert.equal(s.register.members, 2);
      assert.deepEqual(s.registers, [{
        address: register.address,
        registerId: s.register.registerId,
        self: true,
        state: "up",
        linkedServices: 2,
        connectedServices: 2,
        uptimeMs: s.register.uptimeMs,
      }]);
      assert.ok(Math.abs(s.now - Date.now()) < 60_000);
    });

    await t.step("rates and history over the reports", async () => {
      await eventually("alpha's inbound rate shows", async () => {
        sockets[1]!.send("tick");
        const state = await getState(register);
        return (viewOf(state, "alpha")?.messagesInPerSec ?? 0) > 0 &&
          state.history.some((p) => p.messagesInPerSec > 0);
      });
      const state = await getState(register);
      const last = state.history.at(-1)!;
      assert.equal(typeof last.t, "number");
      assert.equal(typeof last.clients, "number");
      assert.ok(
        state.history.every((p, i) =>
          i === 0 || p.t >= state.history[i - 1]!.t
        ),
      );
    });

    await t.step("counts follow clients that come and go", async () => {
      await shut(sockets.shift()!);
      sockets.push(await open(beta), await open(beta));
      await eventually("the counts change", async () => {
        const state = await getState(register);
        return viewOf(state, "alpha")?.clients === 1 &&
          viewOf(state, "beta")?.clients === 3 && state.totals.clients === 4;
      });
    });

    await t.step("a service that leaves is forgotten", async () => {
      for (const socket of sockets.splice(1)) await shut(socket);
      await beta.close();
      await eventually("beta is gone", async () => {
        const state = await getState(register);
        return state.services.length === 1 && state.totals.services === 1 &&
          viewOf(state, "beta") === undefined;
      });
    });
  } finally {
    for (const socket of sockets) await shut(socket);
    await beta.close();
  }
});

Deno.test("dashboard page: one self-contained document", async () => {
  await using register = await startLocalRegister({ httpPort: 0 });
  const base = `http://127.0.0.1:${register.httpPort}`;
  const page = await fetch(`${base}/`);
  assert.equal(page.status, 200);
  assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
  const csp = page.headers.get("content-security-policy") ?? "";
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /connect-src 'self'/);
  assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/=]+'/);
  const html = await page.text();
  assert.ok(html.length < 64 * 1024, `page of ${html.length} bytes`);
  // Nothing is loaded from anywhere: no src, no stylesheet, no font; the
  // only URL is the SVG namespace, an identifier that is never fetched.
  assert.doesNotMatch(
    html,
    /\ssrc=|@import|url\(|<link (?!rel="icon" href="data:,")/,
  );
  const urls = [...html.matchAll(/https?:\/\/[^\s"'<>]+/g)].map((m) => m[0]);
  assert.deepEqual([...new Set(urls)], ["http://www.w3.org/2000/svg"]);
  // The script that the policy allows is the one in the page.
  const script = /<script>([\s\S]*)<\/script>/.exec(html)![1]!;
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(script)),
  );
  const hash = btoa(String.fromCharCode(...digest));
  assert.ok(csp.includes(`'sha256-${hash}'`), "the CSP names the script");

  const post = await fetch(`${base}/dashboard/state`, { method: "POST" });
  assert.equal(post.status, 405);
  await post.body?.cancel();
  const missing = await fetch(`${base}/nope`);
  assert.equal(missing.status, 404);
  assert.match(await missing.text(), /\/ \(the dashboard\)/);
});

Deno.test("dashboard state asks for its token when the register has a secret", async (t) => {
  const secret = "cluster-secret-of-the-test";
  const token = "dashboard-token-of-the-test";
  await t.step(
    "401 without a token, with a wrong one, or the secret",
    async () => {
      await using register = await startLocalRegister({
        httpPort: 0,
        secret,
        dashboardToken: token,
      });
      const missing = await refusal(register);
      assert.equal(missing.status, 401);
      assert.equal(missing.code, "dashboard_token_required");
      for (const wrong of [`Bearer ${secret}`, "Bearer nope", token]) {
        const refused = await refusal(register, wrong);
        assert.equal(refused.status, 401, wrong);
        assert.equal(refused.code, "dashboard_token_wrong");
      }
      const state = await getState(register, token);
      assert.equal(state.totals.services, 0);
      // The page is the same for everyone, and holds neither.
      const html = await (await fetch(`http://127.0.0.1:${register.httpPort}/`))
        .text();
      assert.ok(!html.includes(secret) && !html.includes(token));
    },
  );

  await t.step("403 saying how to set one when there is none", async () => {
    await using register = await startLocalRegister({ httpPort: 0, secret });
    const refused = await refusal(register, `Bearer ${secret}`);
    assert.equal(refused.status, 403);
    assert.equal(refused.code, "dashboard_token_not_set");
    assert.match(refused.message, /--dashboard-token-file/);
    assert.match(refused.message, /WSGATE_DASHBOARD_TOKEN_FILE/);
    assert.match(refused.message, /dashboardToken/);
  });

  await t.step("a token without a secret is asked for too", async () => {
    await using register = await startLocalRegister({
      httpPort: 0,
      dashboardToken: token,
    });
    assert.equal((await refusal(register)).status, 401);
    assert.equal((await getState(register, token)).totals.services, 0);
  });

  await t.step("too many wrong tokens: 429 for a while", async () => {
    await using register = await startLocalRegister({
      httpPort: 0,
      dashboardToken: token,
    });
    const statuses: number[] = [];
    for (let i = 0; i < 25; i++) {
      statuses.push((await refusal(register, `Bearer guess-${i}`)).status);
    }
    assert.deepEqual(statuses.slice(0, 20), new Array(20).fill(401));
    assert.deepEqual(statuses.slice(20), new Array(5).fill(429));
    assert.equal((await refusal(register, `Bearer ${token}`)).status, 429);
  });

  await t.step(
    "startRegister refuses the secret as token, or a token without httpPort",
    async () => {
      await assert.rejects(
        startRegister({
          port: 0,
          httpPort: 0,
          secret,
          dashboardToken: secret,
          logLevel: "error",
        }),
        (error: Error) =>
          error instanceof TypeError &&
          /must differ from 'secret'/.test(error.message),
      );
      await assert.rejects(
        startRegister({ port: 0, dashboardToken: token, logLevel: "error" }),
        (error: Error) =>
          error instanceof TypeError && /needs 'httpPort'/.test(error.message),
      );
      await assert.rejects(
        startRegister({
          port: 0,
          httpPort: 0,
          dashboardToken: "",
          logLevel: "error",
        }),
        TypeError,
      );
    },
  );
});

Deno.test("a member that reports no stats (an older service) stays a member", async (t) => {
  await using register = await startLocalRegister({
    httpPort: 0,
    statsIntervalMs: INTERVAL_MS,
  });
  using channel = dial(register.address);
  const client = createClient(RegisterService, channel.transport);
  const member = { nodeId: createNodeId(), rpcAddress: "127.0.0.1:1" };
  const controller = new AbortController();
  const stream = client.join({ member }, { signal: controller.signal });
  const iterator = stream[Symbol.asyncIterator]();
  try {
    await t.step("its list asks for reports; it sends none", async () => {
      const first = await iterator.next();
      assert.equal(first.value?.event.case, "members");
      const list = first.value!.event.value as {
        statsIntervalMs: number;
        members: { nodeId: string }[];
      };
      assert.equal(list.statsIntervalMs, INTERVAL_MS);
      assert.deepEqual(list.members.map((m) => m.nodeId), [member.nodeId]);
      await new Promise((resolve) => setTimeout(resolve, 3 * INTERVAL_MS));
      const state = await getState(register);
      assert.equal(state.totals.services, 1);
      assert.equal(state.services[0]!.nodeId, member.nodeId);
      assert.equal(state.services[0]!.state, "no-stats");
      assert.equal(state.services[0]!.uptimeMs, null);
      assert.equal(state.services[0]!.rpcAddress, member.rpcAddress);
    });

    await t.step(
      "reports from strangers and malformed ones are refused",
      async () => {
        using other = dial(register.address);
        const reporter = createClient(RegisterService, other.transport);
        assert.equal(
          await codeOf(reporter.reportStats({
            stats: { nodeId: createNodeId(), state: 2 },
          })),
          Code.InvalidArgument,
          "not a member",
        );
        assert.equal(
          await codeOf(reporter.reportStats({
            stats: { nodeId: member.nodeId, state: 2, name: "x".repeat(129) },
          })),
          Code.InvalidArgument,
          "name too long",
        );
        assert.equal(
          await codeOf(reporter.reportStats({
            stats: {
              nodeId: member.nodeId,
              state: 2,
              peerDelivery: { bounds: [1, 2], counts: [1n], sumSeconds: 1 },
            },
          })),
          Code.InvalidArgument,
          "histogram out of shape",
        );
        assert.equal(
          await codeOf(reporter.reportStats({})),
          Code.InvalidArgument,
          "no stats",
        );
        assert.equal(
          await codeOf(reporter.reportStats({
            stats: {
              nodeId: member.nodeId,
              state: 2,
              name: "now-reporting",
              clients: 7,
            },
          })),
          "ok",
        );
        const state = await getState(register);
        assert.equal(state.services[0]!.name, "now-reporting");
        assert.equal(state.services[0]!.clients, 7);
      },
    );

    await t.step("when it leaves, its report goes with it", async () => {
      controller.abort();
      await eventually(
        "the member left",
        async () => (await getState(register)).totals.services === 0,
      );
    });
  } finally {
    controller.abort();
  }
});

Deno.test("services report over mutual TLS with a secret", async () => {
  const certs = await makeCertificates();
  try {
    const tls = { ...certs.node, ca: certs.ca, mutual: true };
    const secret = "tls-cluster-secret";
    await using register = await startLocalRegister({
      httpPort: 0,
      statsIntervalMs: INTERVAL_MS,
      tls,
      secret,
      dashboardToken: "tls-dashboard-token",
    });
    await using service = await startService(
      echo,
      localServiceOptions(register.address, { name: "tls", tls, secret }),
    );
    await eventually("the service reports over TLS", async () => {
      const state = await getState(register, "tls-dashboard-token");
      return viewOf(state, "tls")?.state === "ready" &&
        viewOf(state, "tls")?.nodeId === service.nodeId;
    });
  } finally {
    await certs.remove();
  }
});

Deno.test("a register without httpPort asks for no reports", async () => {
  await using register = await startLocalRegister();
  using channel = dial(register.address);
  const client = createClient(RegisterService, channel.transport);
  const { members } = await client.listMembers({});
  assert.equal(members?.statsIntervalMs, 0);
});

Deno.test("register command line: --dashboard-token-file and WSGATE_DASHBOARD_TOKEN_FILE", async () => {
  const dir = await Deno.makeTempDir({ prefix: "wsgate-dashboard-" });
  try {
    await Deno.writeTextFile(`${dir}/secret`, "cli-cluster-secret\n");
    await Deno.writeTextFile(`${dir}/token`, "cli-dashboard-token\n");
    for (const how of ["flag", "env"] as const) {
      await using child = await Child.start(
        "register.ts",
        [
          "--hostname",
          "127.0.0.1",
          "--port",
          "0",
          "--http-port",
          "0",
          "--secret-file",
          `${dir}/secret`,
          "--log-level",
          "error",
          ...(how === "flag" ? ["--dashboard-token-file", `${dir}/token`] : []),
        ],
        {
          env: how === "env"
            ? { WSGATE_DASHBOARD_TOKEN_FILE: `${dir}/token` }
            : {},
        },
      );
      let url: string | undefined;
      for (let i = 0; i < 5 && url === undefined; i++) {
        const line = await child.nextLine();
        url = /register dashboard on (http:\/\/\S+\/)$/.exec(line ?? "")?.[1];
      }
      assert.ok(
        url !== undefined,
        `the register printed its dashboard (${how})`,
      );
      const refused = await fetch(`${url}dashboard/state`);
      assert.equal(refused.status, 401, how);
      await refused.body?.cancel();
      const state = await fetch(`${url}dashboard/state`, {
        headers: { authorization: "Bearer cli-dashboard-token" },
      });
      assert.equal(state.status, 200, how);
      assert.equal((await state.json()).totals.services, 0);
      const status = await child.stop("SIGTERM");
      assert.equal(status.code, 0);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
