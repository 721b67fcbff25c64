// The library used the way a new user first tries it, with no deno.json of
// theirs: a copy of what `deno publish` would include, in
// `<tmp>/vendor/wsgate/`, runs a register and two services (each its own
// process, started from the copy's register.ts and service.ts, with an
// application beside it), and a service that imports the same copy by URL
// from a local HTTP server joins them. Cross-service sends go both ways.
//
// The temporary folder has no deno.json, package.json or deno.lock above
// it (checked, and a bare import is shown to fail there), so Deno resolves
// the copy's `npm:<name>@<version>` specifiers by themselves: from the
// shared DENO_DIR npm cache, without writing a lockfile.

import assert from "node:assert/strict";
import { dirname, join, resolve, sep } from "node:path";
import { TestClient } from "./helpers/clients.ts";
import { Child, parseReadyLine } from "./helpers/processes.ts";

const root = resolve(dirname(new URL(import.meta.url).pathname), "..");

/** Copies `from` (a file or a folder) to `to`, folders recursively. */
async function copy(from: string, to: string): Promise<number> {
  const info = await Deno.stat(from);
  if (info.isFile) {
    await Deno.mkdir(dirname(to), { recursive: true });
    await Deno.copyFile(from, to);
    return 1;
  }
  let files = 0;
  for await (const entry of Deno.readDir(from)) {
    files += await copy(join(from, entry.name), join(to, entry.name));
  }
  return files;
}

/**
 * Copies what `deno publish` would include (deno.json "publish.include"),
 * minus deno.json itself, into `to`; resolves with the entries copied.
 */
async function copyPublished(to: string): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(join(root, "deno.json")));
  const include = (config.publish.include as string[]).filter((entry) =>
    entry !== "deno.json"
  );
  for (const entry of include) await copy(join(root, entry), join(to, entry));
  return include;
}

/** The config files Deno would find in `folder` or any folder above it. */
async function configsAbove(folder: string): Promise<string[]> {
  const found: string[] = [];
  for (let dir = folder;; dir = dirname(dir)) {
    for (
      const name of ["deno.json", "deno.jsonc", "package.json", "deno.lock"]
    ) {
      const path = join(dir, name);
      if (await Deno.stat(path).then(() => true, () => false)) {
        found.push(path);
      }
    }
    if (dirname(dir) === dir) return found;
  }
}

/** Greets with `id:<clientId>` after binding `?uid=`; `{to, text}` goes to uid `to`. */
const APP = `import type { Application } from "./vendor/wsgate/mod.ts";

const app: Application = {
  async onConnect(clientId, { api, request }) {
    const uid = new URL(request.url).searchParams.get("uid");
    if (uid !== null) await api.bindUid(clientId, uid);
    await api.sendToClient(clientId, \`id:\${clientId}\`);
  },
  async onMessage(_clientId, message, { api, service }) {
    const { to, text } = JSON.parse(String(message));
    await api.sendToUid(to, \`\${text} (via \${service.name})\`);
  },
};
export default app;
`;

/**
 * A service that imports the library from `base` (a URL):
 * `deno run url_service.ts <register>`.
 */
const urlService = (base: string) =>
  `import { startService } from "${base}/mod.ts";

const [register] = Deno.args;
const controller = new AbortController();
Deno.addSignalListener("SIGTERM", () => controller.abort());
const service = await startService({
  async onConnect(clientId, { api, request }) {
    const uid = new URL(request.url).searchParams.get("uid");
    if (uid !== null) await api.bindUid(clientId, uid);
    await api.sendToClient(clientId, \`id:\${clientId}\`);
  },
  async onMessage(_clientId, message, { api, service }) {
    const { to, text } = JSON.parse(String(message));
    await api.sendToUid(to, \`\${text} (via \${service.name})\`);
  },
}, {
  register,
  name: "C",
  hostname: "127.0.0.1",
  port: 0,
  rpcPort: 0,
  logLevel: "warn",
  signal: controller.signal,
});
console.log(\`service C on http://127.0.0.1:\${service.port}/ (node \${service.nodeId}, rpc \${service.rpcAddress})\`);
`;

/** Serves the files under `folder` over HTTP on 127.0.0.1, any free port. */
function serveFolder(folder: string): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      const path = resolve(folder, "." + new URL(request.url).pathname);
      if (!path.startsWith(folder + sep)) {
        return new Response("not found\n", { status: 404 });
      }
      try {
        const body = await Deno.readFile(path);
        const type = path.endsWith(".ts")
          ? "application/typescript"
          : "text/plain";
        return new Response(body, { headers: { "content-type": type } });
      } catch {
        return new Response("not found\n", { status: 404 });
      }
    },
  );
}

/** Connects to the service at `port` as `uid`; reads the greeting. */
async function connectAs(port: number, uid: string): Promise<TestClient> {
  const client = new TestClient(`ws://127.0.0.1:${port}/?uid=${uid}`);
  const greeting = await client.next(10_000);
  assert.match(String(greeting), /^id:/);
  client.id = String(greeting).slice(3);
  return client;
}

/** `from` sends to uid `to`; `to`'s client gets it through the cluster. */
async function send(
  from: TestClient,
  to: TestClient,
  uid: string,
  text: string,
  via: string,
): Promise<void> {
  from.socket.send(JSON.stringify({ to: uid, text }));
  assert.equal(await to.next(10_000), `${text} (via ${via})`);
}

/** The remote-module cache folder of `http://127.0.0.1:<port>/` in DENO_DIR. */
async function remoteCacheOf(port: number): Promise<string | undefined> {
  const { stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    stderr: "null",
  }).output();
  const cache = JSON.parse(new TextDecoder().decode(stdout))
    .modulesCache as string | undefined;
  return cache === undefined
    ? undefined
    : join(cache, "http", `127.0.0.1_PORT${port}`);
}

Deno.test("a copy of the library in a folder without deno.json runs a cluster, also imported by URL", async (t) => {
  const tmp = await Deno.makeTempDir({ prefix: "wsgate-user-" });
  const vendor = join(tmp, "vendor", "wsgate");
  const children: Child[] = [];
  const clients: TestClient[] = [];
  let server: Deno.HttpServer<Deno.NetAddr> | undefined;
  try {
    const included = await copyPublished(vendor);
    assert.ok(included.includes("mod.ts") && included.includes("internal/"));
    await Deno.writeTextFile(join(tmp, "app.ts"), APP);

    await t.step(
      "Deno finds no config there: a bare import fails",
      async () => {
        assert.deepEqual(await configsAbove(tmp), []);
        await Deno.writeTextFile(
          join(tmp, "bare.ts"),
          `import { create } from "@bufbuild/protobuf";\nconsole.log(create);\n`,
        );
        const { code, stderr } = await new Deno.Command(Deno.execPath(), {
          args: ["run", "bare.ts"],
          cwd: tmp,
          stdout: "null",
        }).output();
        assert.notEqual(code, 0);
        assert.match(
          new TextDecoder().decode(stderr),
          /Import "@bufbuild\/protobuf" not a dependency/,
        );
      },
    );

    await t.step(
      "deno check passes on the user's app, with Deno's defaults",
      async () => {
        const { code, stderr } = await new Deno.Command(Deno.execPath(), {
          args: ["check", "app.ts"],
          cwd: tmp,
          stdout: "null",
        }).output();
        assert.equal(code, 0, new TextDecoder().decode(stderr));
      },
    );

    const start = (script: string, args: string[]) =>
      Child.start(join(vendor, script), args, { cwd: tmp });
    let registerAddress = "";
    let a: TestClient | undefined;
    let b: TestClient | undefined;

    await t.step(
      "a register and two services run from the copy; A and B send to each other",
      async () => {
        const register = await start("register.ts", [
          "--hostname",
          "127.0.0.1",
          "--port",
          "0",
          "--log-level",
          "warn",
        ]);
        children.push(register);
        registerAddress = /listening on (\S+)$/.exec(register.first)![1]!;
        const services = [];
        for (const name of ["A", "B"]) {
          const child = await start("service.ts", [
            "--app",
            "./app.ts",
            "--name",
            name,
            "--register",
            registerAddress,
            "--hostname",
            "127.0.0.1",
            "--port",
            "0",
            "--rpc-port",
            "0",
            "--log-level",
            "warn",
          ]);
          children.push(child);
          services.push(parseReadyLine(child.first));
        }
        a = await connectAs(services[0]!.port, "alice");
        b = await connectAs(services[1]!.port, "bob");
        clients.push(a, b);
        await send(a, b, "bob", "hello bob", "A");
        await send(b, a, "alice", "hello alice", "B");
        assert.deepEqual(
          await configsAbove(tmp),
          [],
          "no deno.lock was written: without a config, Deno keeps none",
        );
      },
    );

    await t.step(
      "a service importing http://127.0.0.1:<port>/mod.ts joins them",
      async () => {
        server = serveFolder(vendor);
        const host = `127.0.0.1:${server.addr.port}`;
        const base = `http://${host}`;
        await Deno.writeTextFile(join(tmp, "url_service.ts"), urlService(base));
        const script = [join(tmp, "url_service.ts"), registerAddress];

        const refused = await new Deno.Command(Deno.execPath(), {
          args: ["run", "--allow-net=127.0.0.1", ...script],
          cwd: tmp,
          stdout: "null",
        }).output();
        assert.notEqual(
          refused.code,
          0,
          "a remote import needs --allow-import",
        );
        assert.match(
          new TextDecoder().decode(refused.stderr),
          /--allow-import/,
        );

        const c = await Child.start(script[0]!, script.slice(1), {
          cwd: tmp,
          permissions: ["--allow-net=127.0.0.1", `--allow-import=${host}`],
          denoFlags: ["--quiet"],
        });
        children.push(c);
        const info = parseReadyLine(c.first);
        const carol = await connectAs(info.port, "carol");
        clients.push(carol);
        await send(a!, carol, "carol", "hello carol", "A");
        await send(carol, b!, "bob", "hi from C", "C");
        // The copy was fetched over HTTP, not read from the folder.
        const cache = await remoteCacheOf(server.addr.port);
        assert.ok(
          cache !== undefined &&
            await Deno.stat(cache).then((s) => s.isDirectory, () => false),
          `the remote modules are in DENO_DIR (${cache})`,
        );
      },
    );
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    for (const child of children.reverse()) await child.stop();
    if (server !== undefined) {
      const port = server.addr.port;
      await server.shutdown();
      // Leave nothing of this run's random port in the shared cache.
      const cache = await remoteCacheOf(port);
      if (cache !== undefined) {
        await Deno.remove(cache, { recursive: true }).catch(() => {});
      }
    }
    await Deno.remove(tmp, { recursive: true });
  }
});
