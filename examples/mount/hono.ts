// A service inside a Hono application: a route hands WebSocket upgrades to
// the service, the rest is the application's. Hono on Deno passes the
// connection info of Deno.serve as `c.env`, which service.handler takes
// for the client's address. The service opens no WebSocket port of its own
// (port: false) and joins the cluster as any service does.
//
//   deno run -A examples/mount/hono.ts [--register HOST:PORT]
//
// Without --register it starts a register in this process. Then open
// http://127.0.0.1:8000/ in two tabs.

import { Hono } from "hono";
import { parseArgs } from "node:util";
import { startRegister, startService } from "../../mod.ts";
import app, { PAGE } from "./app.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    register: { type: "string" },
    port: { type: "string", default: "8000" },
  },
});
const controller = new AbortController();
const { signal } = controller;
Deno.addSignalListener("SIGINT", () => controller.abort());

const register = values.register === undefined
  ? await startRegister({ hostname: "127.0.0.1", port: 0, signal })
  : undefined;
const service = await startService(app, {
  register: values.register ?? `127.0.0.1:${register!.port}`,
  port: false,
  rpcPort: 0,
  allowedOrigins: [`http://127.0.0.1:${values.port}`],
  signal,
});

const web = new Hono<{ Bindings: Deno.ServeHandlerInfo }>();
web.get("/", (c) => c.html(PAGE));
web.get("/ws", (c) => service.handler(c.req.raw, c.env));
web.get("/healthz", (c) => service.handler(c.req.raw, c.env));
web.get("/api/hello", (c) => c.json({ hello: "from the application" }));

const server = Deno.serve(
  { hostname: "127.0.0.1", port: Number(values.port), signal },
  web.fetch,
);
await server.finished;
await service.close();
await register?.close();
