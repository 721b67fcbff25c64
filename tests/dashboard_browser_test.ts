// The register's dashboard in a real browser: a register and two services
// in this process, the page at `GET /` on the register's httpPort, driven
// by headless Chromium with every request that does not go to the register
// blocked (and recorded: there must be none).
//
// Needs Chromium (`apt-get install -y chromium`, or CHROMIUM_PATH). Without
// it the test is skipped, unless WSGATE_REQUIRE_BROWSER=1 (as in CI).
//
// WSGATE_SCREENSHOT=docs/dashboard.png also runs a minute of traffic and
// writes a screenshot of the page there (docs/dashboard.png is made so).

import assert from "node:assert/strict";
import {
  type BrowserContext,
  chromium,
  type Page,
  type Request,
} from "playwright-core";
import {
  type Application,
  type Register,
  type Service,
  type ServiceOptions,
  startService,
} from "../mod.ts";
import {
  localServiceOptions,
  startLocalRegister,
} from "./helpers/local_cluster.ts";
import {
  BROWSER_ARGS,
  executablePath,
  skipBrowser,
} from "./helpers/browser.ts";
import { eventually } from "./helpers/waits.ts";

const skip = skipBrowser("dashboard_browser_test");
const screenshot = Deno.env.get("WSGATE_SCREENSHOT");

const WAIT = { timeout: 30_000 };
/** Reports and polls this often, to keep the test short. */
const INTERVAL_MS = 400;

/**
 * Binds `?uid=` and joins `?room=` (default "lobby"); a message goes to
 * everyone in the lobby, on every service.
 */
const app: Application = {
  async onConnect(clientId, { api, request }) {
    const params = new URL(request.url).searchParams;
    const uid = params.get("uid");
    if (uid !== null) await api.bindUid(clientId, uid);
    await api.joinGroup(clientId, params.get("room") ?? "lobby");
  },
  onMessage(_clientId, message, { api }) {
    return api.sendToGroup("lobby", message);
  },
};

/** A WebSocket client of `service`, once it is open. */
async function connect(service: Service, query = ""): Promise<WebSocket> {
  const socket = new WebSocket(`ws://127.0.0.1:${service.port}/${query}`);
  socket.onmessage = () => {};
  await new Promise<void>((resolve, reject) => {
    socket.onopen = () => resolve();
    socket.onerror = () => reject(new Error("client did not connect"));
  });
  return socket;
}

/** Closes `socket` and waits for the close. */
async function disconnect(socket: WebSocket): Promise<void> {
  if (socket.readyState === WebSocket.CLOSED) return;
  const closed = new Promise((resolve) => socket.onclose = resolve);
  socket.close();
  await closed;
}

/** A browser whose pages may reach `origin` and nothing else. */
async function openBrowser(origin: string) {
  const profile = await Deno.makeTempDir({ prefix: "wsgate-chrome-" });
  const context: BrowserContext = await chromium.launchPersistentContext(
    profile,
    {
      executablePath,
      headless: true,
      viewport: { width: 1360, height: 900 },
      args: [...BROWSER_ARGS],
    },
  );
  /** Requests for anything but the register, refused. */
  const blocked: string[] = [];
  /** Every request the pages made. */
  const requests: string[] = [];
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (url === origin || url.startsWith(`${origin}/`)) {
      return route.continue();
    }
    blocked.push(url);
    return route.abort();
  });
  context.on(
    "request",
    (request: Request) => void requests.push(request.url()),
  );
  return {
    context,
    blocked,
    requests,
    async close() {
      await context.close();
      await Deno.remove(profile, { recursive: true });
    },
  };
}

/** The cell `column` of the service named `name` on the page. */
function serviceCell(page: Page, name: string, column: string) {
  return page.locator(`#services tr[data-name="${name}"] td.${column}`);
}

/** Waits until the page shows exactly `text` in a service's cell. */
async function untilCell(
  page: Page,
  name: string,
  column: string,
  text: string,
): Promise<void> {
  await page.locator(`#services tr[data-name="${name}"] td.${column}`, {
    hasText: new RegExp(`^${text}$`),
  }).waitFor(WAIT);
}

Deno.test({
  name:
    "dashboard shows the registers and two services with their client counts, as clients come and go, with no network beyond the register",
  ignore: skip,
  async fn() {
    await using register = await startLocalRegister({
      httpPort: 0,
      statsIntervalMs: screenshot === undefined ? INTERVAL_MS : 1000,
      logLevel: "error",
    });
    // A second register, without a dashboard: the page learns of it from
    // what the services report.
    const other = await startLocalRegister({ logLevel: "error" });
    const options = localServiceOptions([register.address, other.address], {
      logLevel: "error",
    });
    const services: Service[] = [];
    const sockets: WebSocket[] = [];
    const origin = `http://127.0.0.1:${register.httpPort}`;
    const browser = await openBrowser(origin);
    try {
      const alpha = await startServiceNamed(app, options, "alpha", services);
      const beta = await startServiceNamed(app, options, "beta", services);
      sockets.push(
        await connect(alpha, "?uid=ann"),
        await connect(alpha, "?uid=bob&room=ops"),
        await connect(beta, "?uid=cy"),
      );

      const page = await browser.context.newPage();
      await page.goto(`${origin}/`);
      await untilCell(page, "alpha", "clients", "2");
      await untilCell(page, "beta", "clients", "1");
      await untilCell(page, "alpha", "uids", "2");
      await untilCell(page, "alpha", "groups", "2");
      await untilCell(page, "alpha", "state", "ready");
      await page.locator("#t-services", { hasText: /^2$/ }).waitFor(WAIT);
      await page.locator("#t-clients", { hasText: /^3$/ }).waitFor(WAIT);
      // Each service row names its addresses as the service has them.
      assert.equal(
        (await serviceCell(page, "alpha", "address").textContent())?.startsWith(
          `127.0.0.1:${alpha.port}`,
        ),
        true,
      );
      assert.match(
        (await serviceCell(page, "beta", "address").textContent()) ?? "",
        new RegExp(`rpc ${beta.rpcAddress.replaceAll(".", "\\.")}$`),
      );
      // The register itself, as the services dial it.
      const self = page.locator(
        `#registers tr[data-address="${register.address}"]`,
      );
      await self.locator("td.linked", { hasText: /^2 of 2$/ }).waitFor(WAIT);
      assert.match((await self.textContent()) ?? "", /this register/);
      assert.match((await self.locator("td.state").textContent())!, /^up$/);
      const second = page.locator(
        `#registers tr[data-address="${other.address}"]`,
      );
      await second.locator("td.linked", { hasText: /^2 of 2$/ }).waitFor(WAIT);
      assert.match((await second.locator("td.state").textContent())!, /^up$/);

      // One of alpha's clients goes, two come to beta.
      await disconnect(sockets.shift()!);
      sockets.push(await connect(beta), await connect(beta));
      await untilCell(page, "alpha", "clients", "1");
      await untilCell(page, "beta", "clients", "3");
      await untilCell(page, "alpha", "uids", "1");
      await page.locator("#t-clients", { hasText: /^4$/ }).waitFor(WAIT);

      // Messages in and out show as rates.
      await eventually("beta's messages show as a rate", async () => {
        sockets.at(-1)!.send("hello");
        const text = await serviceCell(page, "beta", "in").textContent();
        return text !== null && text !== "0";
      }, 20_000);

      // A service that leaves leaves the page.
      await services.pop()!.close();
      await page.locator('#services tr[data-name="beta"]').waitFor({
        state: "detached",
        ...WAIT,
      });
      await page.locator("#t-services", { hasText: /^1$/ }).waitFor(WAIT);

      if (screenshot !== undefined) {
        await startServiceNamed(app, options, "beta", services);
        await takeScreenshot(page, services, sockets, screenshot);
      }

      // The second register goes away: the services say so.
      await other.close();
      await second.locator("td.state", { hasText: /^down$/ }).waitFor(WAIT);

      const polls = browser.requests.filter((u) =>
        u === `${origin}/dashboard/state`
      );
      assert.ok(polls.length >= 3, `the page polled: ${polls.length}`);
      assert.deepEqual(browser.blocked, [], "no request beyond the register");
      assert.ok(browser.requests.every((u) => u.startsWith(`${origin}/`)));
    } finally {
      for (const socket of sockets) await disconnect(socket);
      await browser.close();
      for (const service of services) await service.close();
      await other.close();
    }
  },
});

Deno.test({
  name:
    "dashboard with a secret asks for its token: a wrong one and the cluster secret are refused, the right one shows the cluster",
  ignore: skip,
  async fn() {
    const secret = "cluster-secret-for-the-test";
    const token = "dashboard-token-for-the-test";
    await using register = await startLocalRegister({
      httpPort: 0,
      statsIntervalMs: INTERVAL_MS,
      secret,
      dashboardToken: token,
      logLevel: "error",
    });
    const origin = `http://127.0.0.1:${register.httpPort}`;
    const services: Service[] = [];
    const browser = await openBrowser(origin);
    try {
      await startServiceNamed(
        app,
        localServiceOptions(register.address, { logLevel: "error", secret }),
        "gamma",
        services,
      );
      const page = await browser.context.newPage();
      await page.goto(`${origin}/`);
      const html = await page.content();
      assert.ok(!html.includes(secret) && !html.includes(token));

      // The page asks; nothing of the cluster shows.
      await page.locator("#auth").waitFor(WAIT);
      await page.locator("#auth-message", { hasText: "dashboard token" })
        .waitFor(WAIT);
      assert.equal(await page.locator("#content").isHidden(), true);

      for (const wrong of ["not-the-token", secret]) {
        await page.locator("#token-input").fill(wrong);
        await page.locator("#auth-form button[type=submit]").click();
        await page.locator("#auth-message", {
          hasText: "Wrong dashboard token",
        }).waitFor(WAIT);
        assert.equal(await page.locator("#content").isHidden(), true);
        assert.equal(
          await sessionToken(page),
          null,
          "a wrong token is dropped",
        );
      }

      await page.locator("#token-input").fill(token);
      await page.locator("#auth-form button[type=submit]").click();
      await untilCell(page, "gamma", "clients", "0");
      assert.equal(await page.locator("#auth").isHidden(), true);
      assert.equal(await sessionToken(page), token);

      // A reload keeps the token for this tab.
      await page.reload();
      await untilCell(page, "gamma", "state", "ready");
      assert.equal(await page.locator("#auth").isHidden(), true);
      assert.deepEqual(browser.blocked, []);
    } finally {
      await browser.close();
      for (const service of services) await service.close();
    }
  },
});

Deno.test({
  name:
    "dashboard of a register with a secret and no dashboard token says how to set one",
  ignore: skip,
  async fn() {
    await using register: Register = await startLocalRegister({
      httpPort: 0,
      secret: "cluster-secret-for-the-test",
      logLevel: "error",
    });
    const origin = `http://127.0.0.1:${register.httpPort}`;
    const browser = await openBrowser(origin);
    try {
      const page = await browser.context.newPage();
      await page.goto(`${origin}/`);
      await page.locator("#notice-text", { hasText: "--dashboard-token-file" })
        .waitFor(WAIT);
      assert.equal(await page.locator("#auth").isHidden(), true);
      assert.equal(await page.locator("#content").isHidden(), true);
      assert.deepEqual(browser.blocked, []);
    } finally {
      await browser.close();
    }
  },
});

/** Starts a service named `name` and adds it to `started`. */
async function startServiceNamed(
  application: Application,
  options: ServiceOptions,
  name: string,
  started: Service[],
): Promise<Service> {
  const service = await startService(application, { ...options, name });
  started.push(service);
  return service;
}

function sessionToken(page: Page): Promise<string | null> {
  return page.evaluate(() =>
    // deno-lint-ignore no-explicit-any
    (globalThis as any).sessionStorage.getItem("wsgate-dashboard-token")
  );
}

/**
 * A minute of traffic that rises and falls, with clients coming and going,
 * then the page as a PNG at `path`.
 */
async function takeScreenshot(
  page: Page,
  services: Service[],
  sockets: WebSocket[],
  path: string,
): Promise<void> {
  const [alpha, beta] = services;
  for (let i = 0; i < 6; i++) {
    sockets.push(await connect(i % 2 === 0 ? alpha! : beta!, `?uid=u${i}`));
  }
  const started = Date.now();
  for (let tick = 0; Date.now() - started < 65_000; tick++) {
    const open = sockets.filter((s) => s.readyState === WebSocket.OPEN);
    const burst = 2 + Math.round(6 * (1 + Math.sin(tick / 12)));
    for (let i = 0; i < burst; i++) open[i % open.length]!.send(`m${tick}`);
    if (tick % 40 === 20) {
      sockets.push(await connect(tick % 80 === 20 ? beta! : alpha!));
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  await untilCell(page, "beta", "state", "ready");
  await page.screenshot({ path, fullPage: true });
  console.log(`dashboard screenshot: ${path}`);
}
