// The application: what the business code does with its clients. Copy this
// folder to start your own project. Run a register and a service of it:
//
//   deno run -A register.ts
//   deno run -A service.ts --app examples/default/app.ts
//
// or everything in one process: deno task start (main.ts).

import type { Application } from "../../mod.ts";

/** Greets each client, relays what it says to everyone, says who left. */
const app: Application = {
  async onConnect(clientId, { api }) {
    await api.sendToClient(clientId, `welcome, you are ${clientId}`);
    await api.sendToAll(`${clientId} joined`, { exclude: [clientId] });
  },
  async onMessage(clientId, message, { api }) {
    if (typeof message === "string") {
      await api.sendToAll(`${clientId}: ${message}`);
    } else {
      await api.sendToAll(message); // bytes go out as binary frames
    }
  },
  async onClose(clientId, { api }) {
    await api.sendToAll(`${clientId} left`);
  },
};

export default app;
