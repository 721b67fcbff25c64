// The baseline of `deno task bench`: a single Deno process with
// Deno.serve + Deno.upgradeWebSocket and nothing else, speaking the bench
// app protocol. It is the ceiling for one process on this machine.
//
// Copied from our peer benchmark harness (../shared/bench/peers/raw-deno/
// server.ts in the workplace); changed only to pass this project's type
// checks, to take port 0, and to print its port as one JSON line.
//
//   deno run --allow-net=127.0.0.1 bench/raw_server.ts [--port 0]

function arg(name: string, fallback: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] ?? fallback : fallback;
}

const OP_BCAST = 0x42;
const OP_P2P = 0x50;

const sockets = new Map<string, WebSocket>();
const decoder = new TextDecoder();
let nextId = 0;

Deno.serve({
  hostname: arg("host", "127.0.0.1"),
  port: Number(arg("port", "0")),
  onListen: ({ port }) => console.log(JSON.stringify({ port, pid: Deno.pid })),
}, (req) => {
  if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return new Response("raw Deno bench baseline\n");
  }
  const { socket, response } = Deno.upgradeWebSocket(req);
  const id = `${++nextId}`;
  socket.binaryType = "arraybuffer";
  socket.onopen = () => {
    sockets.set(id, socket);
    socket.send(`id:${id}`);
  };
  socket.onmessage = (ev) => {
    if (typeof ev.data === "string") return;
    const u8 = new Uint8Array(ev.data as ArrayBuffer);
    if (u8.length < 2) return;
    if (u8[0] === OP_BCAST) {
      for (const s of sockets.values()) {
        if (s.readyState === WebSocket.OPEN) s.send(u8);
      }
    } else if (u8[0] === OP_P2P) {
      const target = sockets.get(decoder.decode(u8.subarray(2, 2 + u8[1]!)));
      if (target && target.readyState === WebSocket.OPEN) target.send(u8);
    }
  };
  socket.onclose = () => {
    sockets.delete(id);
  };
  socket.onerror = () => {};
  return response;
});
