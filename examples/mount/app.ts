// The application of the mount examples: every client joins the group
// "room", and what one sends, everyone in the room gets, on whichever
// service of the cluster they are.

import type { Application } from "../../mod.ts";

const app: Application = {
  async onConnect(clientId, { api }) {
    await api.joinGroup(clientId, "room");
  },
  async onMessage(clientId, message, { api }) {
    if (typeof message === "string") {
      await api.sendToGroup("room", `${clientId}: ${message}`);
    }
  },
};

export default app;

/** A page that talks to the WebSocket at /ws, for a quick try in a browser. */
export const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>wsgate, mounted</title>
<form><input id="text" autocomplete="off" placeholder="say something"></form>
<pre id="log"></pre>
<script>
  const log = document.getElementById("log");
  const socket = new WebSocket(location.origin.replace(/^http/, "ws") + "/ws");
  socket.onmessage = (event) => log.textContent += event.data + "\\n";
  socket.onclose = (event) => log.textContent += "closed " + event.code + "\\n";
  document.forms[0].onsubmit = (event) => {
    event.preventDefault();
    socket.send(document.getElementById("text").value);
    document.getElementById("text").value = "";
  };
</script>
`;
