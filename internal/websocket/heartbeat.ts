// The heartbeat of a service's WebSockets, one timer for all of them: a
// socket from which nothing arrived for half of `timeoutMs` is pinged
// (browsers answer pings by themselves); one from which nothing, not even
// the pong, arrived for `timeoutMs` is cut off with 1001.

import { CLOSE_CODE, type ServerWebSocket } from "./server_socket.ts";

/** Watches sockets for silence. */
export class Heartbeat implements Disposable {
  readonly #timeoutMs: number;
  readonly #sockets = new Set<ServerWebSocket>();
  readonly #timer: ReturnType<typeof setInterval>;

  /** Starts the timer: it runs four times per `timeoutMs`. */
  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
    this.#timer = setInterval(() => this.#beat(), Math.max(10, timeoutMs / 4));
  }

  add(socket: ServerWebSocket): void {
    this.#sockets.add(socket);
  }

  delete(socket: ServerWebSocket): void {
    this.#sockets.delete(socket);
  }

  #beat(): void {
    const now = Date.now();
    for (const socket of this.#sockets) {
      const silent = now - socket.lastReceived;
      if (silent >= this.#timeoutMs) {
        this.#sockets.delete(socket);
        socket.terminate(CLOSE_CODE.GOING_AWAY, "no answer to pings");
      } else if (silent >= this.#timeoutMs / 2 && !socket.pinged) {
        socket.ping();
      }
    }
  }

  [Symbol.dispose](): void {
    clearInterval(this.#timer);
    this.#sockets.clear();
  }
}
