// The raw Deno ceiling of the benchmarks: one process, Deno.serve and
// Deno.upgradeWebSocket, no framework. It speaks the bench app protocol
// (see bench/app.ts and bench/README.md) with the least work a server can
// do: a map from client id to socket, a loop over all sockets for 'B'
// frames, one lookup for 'P' frames. Nothing else runs in it, so its CPU
// per delivery is what one Deno thread needs to push a WebSocket frame.
//
//   deno run --allow-net=127.0.0.1 bench/raw_server.ts [--port 0] [--hostname 127.0.0.1]
//
// Once listening it prints one JSON line, {"port":P,"pid":N}.

function flag(name: string, fallback: string): string {
  const at = Deno.args.indexOf(`--${name}`);
  return at >= 0 && at + 1 < Deno.args.length ? Deno.args[at + 1]! : fallback;
}

const BROADCAST = 0x42; // 'B'
const POINT_TO_POINT = 0x50; // 'P'
const decoder = new TextDecoder();
/** Open sockets by client id. */
const open = new Map<string, WebSocket>();
let connections = 0;

function relay(frame: Uint8Array): void {
  if (frame.length < 2) return;
  if (frame[0] === BROADCAST) {
    for (const socket of open.values()) socket.send(frame);
  } else if (frame[0] === POINT_TO_POINT) {
    const id = decoder.decode(frame.subarray(2, 2 + frame[1]!));
    open.get(id)?.send(frame);
  }
}

function accept(request: Request): Response {
  if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return new Response("raw Deno WebSocket server of the wsgate bench\n");
  }
  const { socket, response } = Deno.upgradeWebSocket(request);
  const id = `r${(++connections).toString(36)}`;
  socket.binaryType = "arraybuffer";
  socket.onopen = () => {
    open.set(id, socket);
    socket.send(`id:${id}`);
  };
  socket.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
    if (typeof event.data !== "string") relay(new Uint8Array(event.data));
  };
  socket.onclose = () => open.delete(id);
  socket.onerror = () => {};
  return response;
}

Deno.serve({
  hostname: flag("hostname", "127.0.0.1"),
  port: Number(flag("port", "0")),
  onListen({ port }) {
    console.log(JSON.stringify({ port, pid: Deno.pid }));
  },
}, accept);
