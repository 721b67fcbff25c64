// The Socket.IO peer of the wsgate benchmark (bench/peers.ts): one Node
// process of a Socket.IO 4.8 cluster whose servers share a redis-server
// through @socket.io/redis-adapter (its classic pub/sub adapter). The
// benchmark starts two of them on one redis-server.
//
// It speaks the bench app protocol in Socket.IO's own terms, so that the
// server does the same routing work as bench/app.ts and bench/raw_server.ts:
//
//   - the client id is the socket id, which every client learns from the
//     namespace connect answer (40{"sid":"..."}) when it connects;
//   - a client emits event "f" with one binary argument, the test frame;
//   - byte 0 'B' (0x42): io.emit("f", frame), to every client of every
//     process;
//   - byte 0 'P' (0x50), byte 1 = L, bytes 2 .. 2+L the target id:
//     io.to(target).emit("f", frame), to that client wherever it is
//     (every socket is in the room of its own id);
//   - anything else is ignored.
//
// Only the websocket transport is offered (no long-polling), so a client
// needs no sticky session.
//
//   node server.mjs --redis redis://127.0.0.1:PORT [--port 0] [--hostname 127.0.0.1]
//
// Once it listens (and its two Redis connections are up) it prints one JSON
// line, {"port":P,"pid":N}. SIGTERM or SIGINT stop it.

import { createServer } from "node:http";
import { createRequire } from "node:module";

// The packages are loaded with require() from this folder's node_modules
// (installed by `npm ci` from package-lock.json). A static import would
// work as well under Node; require() keeps Deno's checker, which walks
// bench/ for the Deno code, from trying to resolve Node packages.
const require = createRequire(import.meta.url);
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  if (at >= 0 && at + 1 < process.argv.length) return process.argv[at + 1];
  if (fallback === undefined) {
    console.error(`server.mjs: --${name} is required`);
    process.exit(2);
  }
  return fallback;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/;
const hostname = option("hostname", "127.0.0.1");
const port = Number(option("port", "0"));
const redisUrl = option("redis");
if (!LOOPBACK.test(hostname) || !LOOPBACK.test(new URL(redisUrl).hostname)) {
  console.error("server.mjs: only loopback addresses are allowed");
  process.exit(2);
}

const BROADCAST = 0x42; // 'B'
const POINT_TO_POINT = 0x50; // 'P'

const publisher = createClient({ url: redisUrl });
const subscriber = publisher.duplicate();
for (
  const [name, client] of [["publisher", publisher], ["subscriber", subscriber]]
) {
  client.on(
    "error",
    (error) => console.error(`redis ${name}: ${error.message}`),
  );
}
await Promise.all([publisher.connect(), subscriber.connect()]);

const http = createServer((_request, response) => {
  response.end("Socket.IO peer of the wsgate bench\n");
});
const io = new Server(http, {
  transports: ["websocket"],
  serveClient: false,
  adapter: createAdapter(publisher, subscriber),
});

io.on("connection", (socket) => {
  socket.on("f", (frame) => {
    if (!Buffer.isBuffer(frame) || frame.length < 2) return;
    if (frame[0] === BROADCAST) {
      io.emit("f", frame);
    } else if (frame[0] === POINT_TO_POINT) {
      const target = frame.toString("utf8", 2, 2 + frame[1]);
      io.to(target).emit("f", frame);
    }
  });
});

http.listen(port, hostname, 4096, () => {
  console.log(JSON.stringify({ port: http.address().port, pid: process.pid }));
});

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(0), 2000).unref();
  io.close(() => {
    Promise.allSettled([publisher.quit(), subscriber.quit()])
      .finally(() => process.exit(0));
  });
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
