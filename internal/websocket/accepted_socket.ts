// The seam between a client's WebSocket and the code that serves it: what a
// socket accepted by the service offers (ServerWebSocket on the service's
// own port, StandardSocket over Deno.upgradeWebSocket in the user's
// server) and what it reports, so that the hub-facing ClientConnection is
// one piece of code for both.

import type { Message } from "../../api.ts";

/** What a socket reports to its owner. */
export interface SocketEvents {
  /** The handshake is done: messages may flow. */
  open(): void;
  /** A whole message: a string for text, bytes for binary. */
  message(message: Message): void;
  /**
   * The connection is closed: with the code of the close frame that ended
   * it (the client's or ours), or 1006 when it ended without one. Once.
   */
  close(code: number, reason: string): void;
  /**
   * The socket refused something the client sent and is closing: `code`
   * says what (1002, 1007, 1009; 1008 for a message that arrived while
   * paused on a socket that cannot stop reading).
   */
  refused(code: number, reason: string): void;
}

/** A client's WebSocket, from the upgrade on, however it is framed. */
export interface AcceptedSocket {
  /** Whether messages can be sent. */
  readonly isOpen: boolean;
  /** Bytes sent and not yet taken by the connection. */
  readonly bufferedAmount: number;
  /** Where the socket reports; set once, right after the upgrade. */
  listen(events: SocketEvents): void;
  /** Sends a message; nothing when the socket is not open. */
  send(message: Message): void;
  /**
   * Sends `message` as the `wsgate.v1` data frame of `seq` (its payload
   * behind the seq: docs/protocol.md); nothing when the socket is not open.
   */
  sendNumbered(seq: number, message: Message): void;
  /**
   * Starts the closing handshake after what is queued; the socket reports
   * `close` when the client answers, or after a timeout at the latest.
   */
  close(code: number, reason: string): void;
  /**
   * Closes a client that does not read: drops what waits to be written
   * where the socket can, then closes as {@linkcode close} does.
   */
  abandon(code: number, reason: string): void;
  /**
   * Reports `close` with `code` at once, and ends the connection as far as
   * the socket can: for a client that is gone, stuck or not reading.
   */
  terminate(code: number, reason: string): void;
  /**
   * Stops taking messages from the client until {@linkcode resume}: the
   * socket stops reading, or, when it cannot (a standard `WebSocket` reads
   * on by itself), refuses a message that arrives meanwhile with 1008.
   */
  pause(): void;
  /** Takes messages again after {@linkcode pause}. */
  resume(): void;
}
