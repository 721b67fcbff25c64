// A service inside the application's own Deno.serve. The application keeps
// its port and its routes; /ws answers the service's WebSockets, /healthz
// and /metrics its operator endpoints. The service opens no WebSocket port
// of its own (port: false): it joins the cluster over its RPC port as any
// service does, so its clients reach the other services' clients and back.
//
//   deno run -A examples/mount/deno_serve.ts [--register HOST:PORT]
//
// Without --register it starts a register in this process. Then open
// http://127.0.0.1:8000/ in two tabs.

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
  // Browsers send Origin: only pages of this server may connect.
  allowedOrigins: [`http://127.0.0.1:${values.port}`],
  signal,
});

/** The service's paths; everything else is the application's. */
const SERVICE_PATHS = new Set(["/ws", "/healthz", "/metrics"]);

const server = Deno.serve(
  { hostname: "127.0.0.1", port: Number(values.port), signal },
  (request, info) => {
    const { pathname } = new URL(request.url);
    if (SERVICE_PATHS.has(pathname)) return service.handler(request, info);
    if (pathname === "/") {
      return new Response(PAGE, {
        headers: { "content-type": "text/html; charset=utf-8" },
      });
    }
    return new Response("not found\n", { status: 404 });
  },
);
await server.finished;
// The server stopped taking requests: close the service's clients (1001)
// gracefully, then the register if it is ours.
await service.close();
await register?.close();
