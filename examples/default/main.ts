// The whole example cluster in one command: a register and two services,
// until Ctrl-C.
//
//   deno task start      (deno run -A examples/default/main.ts)

import { startRegister, startService } from "../../mod.ts";
import app from "./app.ts";

const controller = new AbortController();
const { signal } = controller;
Deno.addSignalListener("SIGINT", () => controller.abort());
Deno.addSignalListener("SIGTERM", () => controller.abort());

const register = await startRegister({ port: 8101, signal });
const services = [
  await startService(app, {
    register: "127.0.0.1:8101",
    port: 9201,
    rpcPort: 9101,
    signal,
  }),
  await startService(app, {
    register: "127.0.0.1:8101",
    port: 9202,
    rpcPort: 9102,
    signal,
  }),
];
console.log(`register on 127.0.0.1:${register.port}`);
for (const service of services) {
  console.log(`service ${service.nodeId}: ws://127.0.0.1:${service.port}/`);
}
console.log("Ctrl-C stops everything.");
await new Promise((resolve) => signal.addEventListener("abort", resolve));
await Promise.all(services.map((s) => s.close()));
await register.close();
