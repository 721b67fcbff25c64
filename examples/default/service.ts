// Starts one service of the example cluster.
//
//   deno run -A examples/default/service.ts [--register 127.0.0.1:8101] \
//     [--port 9201] [--rpc-port 9101]

import { startService } from "../../mod.ts";
import { app } from "./app.ts";

function flag(name: string, fallback: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] ?? fallback : fallback;
}

const controller = new AbortController();
Deno.addSignalListener("SIGINT", () => controller.abort());
Deno.addSignalListener("SIGTERM", () => controller.abort());
const service = await startService(app, {
  register: flag("register", "127.0.0.1:8101"),
  port: Number(flag("port", "9201")),
  rpcPort: Number(flag("rpc-port", "9101")),
  signal: controller.signal,
});
console.log(`service ${service.nodeId} on ws://127.0.0.1:${service.port}/`);
