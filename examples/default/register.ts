// Starts the register of the example cluster.
//
//   deno run -A examples/default/register.ts [--port 8101]

import { startRegister } from "../../mod.ts";

const i = Deno.args.indexOf("--port");
const port = i >= 0 ? Number(Deno.args[i + 1]) : 8101;
const controller = new AbortController();
Deno.addSignalListener("SIGINT", () => controller.abort());
Deno.addSignalListener("SIGTERM", () => controller.abort());
const register = await startRegister({ port, signal: controller.signal });
console.log(`register listening on 127.0.0.1:${register.port}`);
