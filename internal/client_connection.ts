// One client's WebSocket: the ClientSocket that the hub sends through, and
// the in-order, never-overlapping calls of the application's hooks.

import type { Message } from "../api.ts";
import type { Application, ConnectContext, Context } from "../application.ts";
import type { ClientSocket } from "./local_hub.ts";
import type { Logger } from "./logger.ts";
import { payloadSize, type ServiceMetrics } from "./metrics.ts";

const OPEN = 1;

type HookEvent =
  | { readonly kind: "connect"; readonly ctx: ConnectContext }
  | { readonly kind: "message"; readonly message: Message }
  | { readonly kind: "close" };

/** A connected client. */
export class ClientConnection implements ClientSocket {
  readonly id: string;
  readonly #socket: WebSocket;
  readonly #app: Application;
  readonly #ctx: Context;
  readonly #logger: Logger;
  /** The service's counters; a slow-consumer close adds to them too. */
  readonly #metrics: ServiceMetrics;
  #busy = false;
  #backlog: HookEvent[] | undefined;

  constructor(
    id: string,
    socket: WebSocket,
    app: Application,
    ctx: Context,
    logger: Logger,
    metrics: ServiceMetrics,
  ) {
    this.id = id;
    this.#socket = socket;
    this.#app = app;
    this.#ctx = ctx;
    this.#logger = logger;
    this.#metrics = metrics;
  }

  send(message: Message): void {
    const socket = this.#socket;
    if (socket.readyState !== OPEN) return;
    try {
      socket.send(message);
      this.#metrics.messagesOut++;
      this.#metrics.bytesOut += payloadSize(message);
    } catch (error) {
      this.#logger.debug("send failed", {
        clientId: this.id,
        error: String(error),
      });
    }
  }

  close(code: number, reason: string): void {
    try {
      this.#socket.close(code, reason);
    } catch {
      // Already closing.
    }
  }

  /** Queues a hook call behind the ones still running. */
  dispatch(event: HookEvent): void {
    if (this.#busy) (this.#backlog ??= []).push(event);
    else this.#run(event);
  }

  #run(event: HookEvent): void {
    let result: void | Promise<void>;
    try {
      result = this.#call(event);
    } catch (error) {
      this.#failed(event, error);
      return;
    }
    if (result !== undefined && typeof result.then === "function") {
      this.#busy = true;
      result.then(undefined, (error) => this.#failed(event, error)).then(
        () => {
          this.#busy = false;
          this.#drain();
        },
      );
    }
  }

  #drain(): void {
    const backlog = this.#backlog;
    while (!this.#busy && backlog !== undefined && backlog.length > 0) {
      this.#run(backlog.shift()!);
    }
  }

  #call(event: HookEvent): void | Promise<void> {
    const app = this.#app;
    switch (event.kind) {
      case "connect":
        return app.onConnect?.(this.id, event.ctx);
      case "message":
        return app.onMessage?.(this.id, event.message, this.#ctx);
      case "close":
        return app.onClose?.(this.id, this.#ctx);
    }
  }

  #failed(event: HookEvent, error: unknown): void {
    const hook = event.kind === "connect"
      ? "onConnect"
      : event.kind === "message"
      ? "onMessage"
      : "onClose";
    this.#logger.error(`${hook} failed`, {
      clientId: this.id,
      error: error instanceof Error
        ? (error.stack ?? error.message)
        : String(error),
    });
  }
}
