// The application of bench/holder_memory.ts, run by service.ts. Clients
// send commands as text:
//   "join N PREFIX"  joins this client to the groups PREFIX0 .. PREFIX<N-1>,
//                    10,000 at a time, then answers "joined <ms>"
//   "seq N PREFIX"   joins N groups one after the other, each awaited (the
//                    latency of a join), then answers "seq <ms>"
//   "mem"            answers Deno.memoryUsage() as JSON after a full
//                    garbage collection (needs --v8-flags=--expose-gc)

import type { Application } from "../mod.ts";

const gc = (globalThis as { gc?: () => void }).gc;

const app: Application = {
  async onConnect(clientId, { api }) {
    await api.sendToClient(clientId, `id:${clientId}`);
  },
  async onMessage(clientId, message, { api }) {
    const [command, count, prefix = "g"] = String(message).split(" ");
    const n = Number(count);
    const start = performance.now();
    switch (command) {
      case "join":
        for (let i = 0; i < n; i += 10_000) {
          const joins = [];
          for (let j = i; j < Math.min(n, i + 10_000); j++) {
            joins.push(api.joinGroup(clientId, `${prefix}${j}`));
          }
          await Promise.all(joins);
        }
        return api.sendToClient(
          clientId,
          `joined ${(performance.now() - start).toFixed(0)}`,
        );
      case "seq":
        for (let i = 0; i < n; i++) {
          await api.joinGroup(clientId, `${prefix}${i}`);
        }
        return api.sendToClient(
          clientId,
          `seq ${(performance.now() - start).toFixed(1)}`,
        );
      case "mem":
        for (let i = 0; i < 3; i++) gc?.();
        return api.sendToClient(clientId, JSON.stringify(Deno.memoryUsage()));
    }
  },
};

export default app;
