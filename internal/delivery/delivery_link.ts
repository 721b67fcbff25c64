// Batched, ordered delivery to one peer service over one long-lived
// stream. What is queued in one tick goes out as one batch; up to
// MAX_UNACKNOWLEDGED_BATCHES batches are on their way at a time, and what
// is queued while that many wait goes out as one bigger batch once the peer
// acknowledges one. So an idle link sends a delivery at once, and a busy
// one sends fewer, bigger batches (fewer writes and acknowledgements) as
// its round trip grows. The peer applies batches in order and acknowledges
// them in order. When a connection ends, what it had not acknowledged fails
// and is never sent again; the next connection carries only what is queued
// after. Each connection is named (link_id.ts, by the transport), and the
// peer drops what an older one still delivers once a newer one has
// (newest_connections.ts): so batches are applied in the order written,
// each at most once, across reconnections too.
//
// Batches start on the first transport (the gRPC Deliver stream). When the
// peer names its delivery port there, the link connects to it in the
// background and moves over at a moment when no batch is in flight, so
// order is kept; if the port cannot be reached, the link stays where it is.
//
// With `holdings`, the link also keeps the peer's view of which uids and
// groups this service holds (internal/cluster/holder_index.ts): each
// connection whose peer applies holder announcements starts them with a
// full snapshot, written before anything queued after it; announcements
// go only where such a snapshot went first; and a link that broke
// reconnects by itself, so that the peer is synced again.

import { GatewayError } from "../../errors.ts";
import { type Deferred, deferred } from "../base/deferred.ts";
import type { Logger } from "../base/logger.ts";
import type { BatchSender, BatchSenderEvents } from "./batch_sender.ts";
import { BATCH_HEADROOM } from "./wire.ts";

interface Batch {
  readonly done: Deferred<void>;
  readonly bytes: number;
  /**
   * When its first delivery was queued (Date.now()); for a batch of a
   * snapshot, when the batch before it was acknowledged, so that a large
   * snapshot gets the deadline for each of its batches.
   */
  since: number;
  /** A batch of a holdings snapshot (not observed as latency). */
  readonly snapshot?: boolean;
}

/**
 * How long after its last fence a link names its sender on each new
 * connection: longer than a takeover can take (internal/session/), and
 * short, so that a peer of an older version restarted at the same address
 * (a rollback) is not sent a kind it does not know for long.
 */
export const ANNOUNCE_MS = 60_000;

/** Batches written and not yet acknowledged, at most. */
export const MAX_UNACKNOWLEDGED_BATCHES = 8;
const INITIAL_BATCH_BYTES = 16 * 1024;
/** A batch buffer that grew past this is dropped once it is sent. */
const MAX_IDLE_BATCH_BYTES = 1024 * 1024;
/** A snapshot of holdings goes in batches of about this many bytes. */
const SNAPSHOT_BATCH_BYTES = 64 * 1024;
/** How long a link with holdings waits before it reconnects, at first and at most. */
const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 5000;

/** What a link needs to keep its peer's view of this service's holdings. */
export interface LinkHoldings {
  /**
   * A full snapshot of this service's holdings, as deliveries that the
   * link may keep (copies): HOLD_RESET with a new epoch, HOLDs, and
   * HOLD_SYNCED last.
   */
  snapshot(): Uint8Array[];
}

/** Options of {@linkcode DeliveryLink}. */
export interface DeliveryLinkOptions {
  /** Bytes that may wait for the peer before sends fail at once. */
  readonly maxQueuedBytes: number;
  /**
   * A batch not acknowledged this long after its first delivery was queued
   * fails with `deadline_exceeded`, and the stream is dropped.
   */
  readonly deadlineMs: number;
  /** Observes each batch's latency, first queued to acknowledged, in s. */
  readonly deliveryLatency?: { observe(seconds: number): void } | undefined;
  /** Says when a peer's delivery port cannot be used. */
  readonly logger?: Logger | undefined;
  /** Counts the deliveries queued and the batches written. */
  readonly counts?: DeliveryCounts | undefined;
  /**
   * Keeps the peer's view of this service's holdings; unset, the link
   * carries no holder announcements.
   */
  readonly holdings?: LinkHoldings | undefined;
}

/** What a service sent its peers: deliveries, and batches by the way they went. */
export interface DeliveryCounts {
  /** Deliveries queued (one per message per peer). */
  deliveries: number;
  /** Batches written on the gRPC Deliver stream. */
  grpcBatches: number;
  /** Batches written to the peer's delivery port. */
  portBatches: number;
}

/** How a {@linkcode DeliveryLink} reaches its peer. */
export interface LinkTransport {
  /** Opens the connection that batches start on (the gRPC stream). */
  open(events: BatchSenderEvents): BatchSender;
  /**
   * Connects to the delivery port the peer named; undefined when none may
   * be used.
   */
  readonly openPort?:
    | ((port: number, events: BatchSenderEvents) => BatchSender)
    | undefined;
}

/** The outgoing delivery stream to one peer. */
export class DeliveryLink {
  readonly #transport: LinkTransport;
  readonly #address: string;
  readonly #logger: Logger | undefined;
  readonly #counts: DeliveryCounts | undefined;
  readonly #maxQueuedBytes: number;
  readonly #deadlineMs: number;
  readonly #latency: DeliveryLinkOptions["deliveryLatency"];
  /**
   * The next batch: `#bytes` bytes of encoded deliveries, after room for
   * the framing.
   */
  #batch = new Uint8Array(BATCH_HEADROOM + INITIAL_BATCH_BYTES);
  #bytes = 0;
  #done: Deferred<void> | undefined;
  #since = 0;
  #watchdog: ReturnType<typeof setTimeout> | undefined;
  readonly #inflight: Batch[] = [];
  #queuedBytes = 0;
  /** Where batches are written now. */
  #call: BatchSender | undefined;
  /** A delivery port connection that batches move to once it is ready. */
  #next: BatchSender | undefined;
  #nextReady = false;
  #flushing = false;
  #closed = false;
  /**
   * A FENCE delivery that names this service only (wire.ts), set by a
   * fence: until `#announceUntil`, every connection's first batch starts
   * with it, so that the peer knows who sends (internal/delivery/origin.ts).
   */
  #announcement: Uint8Array | undefined;
  #announceUntil = 0;
  /** The connection whose batches the peer knows to be from this service. */
  #announced: BatchSender | undefined;
  readonly #holdings: LinkHoldings | undefined;
  /** The connection in use applies holder announcements and had its snapshot. */
  #holding = false;
  /**
   * The peer takes holder announcements: the snapshot is written, or waits
   * for the move to the delivery port (so that a large one does not go
   * twice, and not on the slower gRPC stream).
   */
  #offered = false;
  /** The peer answered the gRPC call in use (its headers came). */
  #answered = false;
  /** Waits for the snapshot of a call that has not answered yet. */
  #snapshotWaiters: Deferred<void> | undefined;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #reconnectMs = RECONNECT_MIN_MS;

  /** A link to the peer at `address`, reached through `transport`. */
  constructor(
    transport: LinkTransport,
    address: string,
    options: DeliveryLinkOptions,
  ) {
    this.#transport = transport;
    this.#address = address;
    this.#logger = options.logger;
    this.#counts = options.counts;
    this.#maxQueuedBytes = options.maxQueuedBytes;
    this.#deadlineMs = options.deadlineMs;
    this.#latency = options.deliveryLatency;
    this.#holdings = options.holdings;
  }

  /**
   * Queues a holder announcement (HOLD or RELEASE, copied at once) where
   * the peer applies it after this service's snapshot. Resolves when the
   * peer has applied it, or the snapshot that will carry it; undefined
   * when the peer does not take announcements (none to wait for).
   */
  announce(delivery: Uint8Array): Promise<void> | undefined {
    if (this.#closed || this.#holdings === undefined) return undefined;
    if (this.#holding) return this.send(delivery);
    if (this.#call === undefined) {
      if (this.#reconnectTimer !== undefined) return undefined;
      this.connect();
    }
    if (this.#answered && !this.#offered) return undefined;
    return (this.#snapshotWaiters ??= quietDeferred()).promise;
  }

  /**
   * Opens the connection to the peer if none is open, so that the peer
   * gets this service's holdings without waiting for a delivery.
   */
  connect(): void {
    if (this.#closed || this.#call !== undefined) return;
    this.#call = this.#open();
  }

  /**
   * Queues a delivery encoded by a DeliveryEncoder (copied at once).
   * Resolves when the peer has applied it; rejects when the stream broke
   * first, or at once when `maxQueuedBytes` are already waiting for this
   * peer.
   */
  send(delivery: Uint8Array): Promise<void> {
    const bytes = delivery.byteLength;
    if (this.#closed) {
      return Promise.reject(
        new GatewayError(
          "closed",
          `Cannot send to service ${this.#address}: the service is closing`,
        ),
      );
    }
    if (
      this.#queuedBytes > 0 &&
      this.#queuedBytes + bytes > this.#maxQueuedBytes
    ) {
      return Promise.reject(
        new GatewayError(
          "unavailable",
          `Cannot send to service ${this.#address}: ${this.#queuedBytes} bytes already wait for it (limit ${this.#maxQueuedBytes})`,
        ),
      );
    }
    let batch = this.#batch;
    const end = BATCH_HEADROOM + this.#bytes;
    if (end + bytes > batch.byteLength) {
      batch = new Uint8Array(Math.max(2 * batch.byteLength, end + bytes));
      batch.set(this.#batch.subarray(0, end));
      this.#batch = batch;
    }
    batch.set(delivery, end);
    this.#bytes += bytes;
    if (this.#counts !== undefined) this.#counts.deliveries++;
    this.#queuedBytes += bytes;
    let done = this.#done;
    if (done === undefined) {
      done = this.#done = deferred();
      this.#since = Date.now();
      this.#armWatchdog();
    }
    if (!this.#flushing && this.#inflight.length < MAX_UNACKNOWLEDGED_BATCHES) {
      // Whatever else is queued in this tick goes out in the same batch.
      this.#flushing = true;
      queueMicrotask(this.#flush);
    }
    return done.promise;
  }

  /**
   * Queues a fence (wire.ts KIND.FENCE) like {@linkcode send}; for
   * ANNOUNCE_MS from now, the peer is told on every new connection that
   * the batches come from this service, with `announcement` (a FENCE that
   * names it only, copied at once).
   */
  fence(delivery: Uint8Array, announcement: Uint8Array): Promise<void> {
    this.#announcement ??= announcement.slice();
    this.#announceUntil = Date.now() + ANNOUNCE_MS;
    return this.send(delivery);
  }

  /** Bytes of deliveries queued for the peer and not yet acknowledged. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Resolves when everything queued so far was acknowledged or failed. */
  drained(): Promise<void> {
    const pending = this.#inflight.map((batch) => batch.done.promise);
    if (this.#done !== undefined) pending.push(this.#done.promise);
    return Promise.allSettled(pending).then(() => {});
  }

  /**
   * Fails what is queued and closes the stream: because this service is
   * closing, or (`left`) because the peer left the cluster.
   */
  close(left = false): void {
    this.#closed = true;
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    this.#stopHolding();
    this.#fail(
      left
        ? new GatewayError(
          "unavailable",
          `Cannot send to service ${this.#address}: it left the cluster`,
        )
        : new GatewayError(
          "closed",
          `Cannot send to service ${this.#address}: this service is closing`,
        ),
    );
    const closed = new GatewayError(
      "closed",
      `Cannot send to service ${this.#address}: the link closed`,
    );
    this.#call?.abort(closed);
    this.#next?.abort(closed);
  }

  /** When the oldest unacknowledged delivery was queued, if any. */
  #oldest(): number | undefined {
    return this.#inflight[0]?.since ??
      (this.#done === undefined ? undefined : this.#since);
  }

  /** Wakes up when the oldest unacknowledged delivery is due. */
  #armWatchdog(): void {
    if (this.#watchdog !== undefined) return;
    const oldest = this.#oldest();
    if (oldest === undefined) return;
    this.#watchdog = setTimeout(() => {
      this.#watchdog = undefined;
      this.#checkDeadline();
    }, Math.max(0, oldest + this.#deadlineMs - Date.now()));
  }

  /** Fails everything and drops the stream when the oldest batch is late. */
  #checkDeadline(): void {
    const oldest = this.#oldest();
    if (oldest === undefined) return;
    if (Date.now() - oldest < this.#deadlineMs) {
      this.#armWatchdog();
      return;
    }
    const late = new GatewayError(
      "deadline_exceeded",
      `Cannot send to service ${this.#address}: no acknowledgement within ${this.#deadlineMs} ms`,
    );
    this.#fail(late);
    this.#call?.abort(late);
  }

  /** Writes the next batch, unless one is in flight already. */
  readonly #flush = (): void => {
    this.#flushing = false;
    const bytes = this.#bytes;
    const inflight = this.#inflight.length;
    if (
      bytes === 0 || this.#closed || inflight >= MAX_UNACKNOWLEDGED_BATCHES ||
      // A delivery port connection is ready: hold new batches until the
      // ones in flight are acknowledged, then move over (#switchOver).
      (this.#nextReady && this.#next !== undefined && inflight > 0)
    ) return;
    this.#switchOver();
    this.#inflight.push({ done: this.#done!, bytes, since: this.#since });
    this.#bytes = 0;
    this.#done = undefined;
    const call = this.#call ??= this.#open();
    if (
      this.#announcement !== undefined && this.#announced !== call &&
      Date.now() < this.#announceUntil
    ) {
      this.#announced = call;
      // The first batch on this connection: the announcement before it.
      const announcement = this.#announcement;
      const first = new Uint8Array(
        BATCH_HEADROOM + announcement.byteLength + bytes,
      );
      first.set(announcement, BATCH_HEADROOM);
      first.set(
        this.#batch.subarray(BATCH_HEADROOM, BATCH_HEADROOM + bytes),
        BATCH_HEADROOM + announcement.byteLength,
      );
      call.write(first, announcement.byteLength + bytes);
    } else {
      call.write(this.#batch, bytes);
    }
    if (this.#counts !== undefined) {
      if (call.via === "grpc") this.#counts.grpcBatches++;
      else this.#counts.portBatches++;
    }
    if (this.#batch.byteLength > BATCH_HEADROOM + MAX_IDLE_BATCH_BYTES) {
      this.#batch = new Uint8Array(BATCH_HEADROOM + INITIAL_BATCH_BYTES);
    }
  };

  /** Opens the first transport. */
  #open(): BatchSender {
    this.#holding = false;
    this.#offered = false;
    this.#answered = false;
    const call: BatchSender = this.#transport.open({
      onReady: () => {
        if (call !== this.#call) return;
        this.#answered = true;
        // onHoldings came first if the peer takes announcements.
        if (!this.#offered) this.#stopHolding();
      },
      onHoldings: () => {
        if (call !== this.#call) return;
        this.#offered = true;
        // The same headers may name a delivery port (onDeliveryPort comes
        // next): then the snapshot goes there, at the move.
        queueMicrotask(() => {
          if (
            call === this.#call && this.#offered && !this.#holding &&
            this.#next === undefined
          ) this.#writeSnapshot(call);
        });
      },
      onAcknowledged: (batches) => this.#acknowledged(batches, call),
      onEnded: (error) => this.#ended(error, call),
      onDeliveryPort: (port) => this.#openPort(port, call),
    });
    return call;
  }

  /** Connects to the delivery port the peer named on `via`. */
  #openPort(port: number, via: BatchSender): void {
    const openPort = this.#transport.openPort;
    if (
      openPort === undefined || via !== this.#call || this.#next !== undefined
    ) {
      return;
    }
    this.#nextReady = false;
    const next: BatchSender = this.#next = openPort(port, {
      onReady: () => {
        if (next !== this.#next) return;
        this.#nextReady = true;
        this.#switchOver();
      },
      onAcknowledged: (batches) => this.#acknowledged(batches, next),
      onEnded: (error) => {
        if (next !== this.#next) return this.#ended(error, next);
        this.#next = undefined;
        if (this.#closed) return;
        const call = this.#call;
        if (this.#offered && !this.#holding && call !== undefined) {
          this.#writeSnapshot(call);
        }
        this.#logger?.warn(
          "cannot use a peer's delivery port; its deliveries stay on gRPC",
          { peer: this.#address, port, error: error.message },
        );
      },
      onDeliveryPort: () => {},
    });
  }

  /** Moves to the ready delivery port connection when nothing is in flight. */
  #switchOver(): void {
    const next = this.#next;
    if (
      next === undefined || !this.#nextReady || this.#inflight.length > 0
    ) return;
    const previous = this.#call;
    this.#call = next;
    this.#next = undefined;
    previous?.finish();
    // The peer's end of the new connection starts over.
    if (this.#offered) this.#writeSnapshot(next);
    this.#logger?.debug("deliveries to a peer moved to its delivery port", {
      peer: this.#address,
    });
  }

  #acknowledged(batches: number, call: BatchSender): void {
    if (call !== this.#call) return;
    for (let n = batches; n > 0; n--) {
      const batch = this.#inflight.shift();
      if (batch === undefined) break;
      this.#queuedBytes -= batch.bytes;
      if (batch.snapshot) {
        const next = this.#inflight[0];
        if (next?.snapshot) next.since = Date.now();
      } else {
        this.#latency?.observe((Date.now() - batch.since) / 1000);
      }
      batch.done.resolve();
    }
    this.#switchOver();
    this.#flush();
  }

  #ended(error: GatewayError, call: BatchSender): void {
    if (call !== this.#call) return;
    this.#call = undefined;
    // A delivery port connection that this call named goes too: the next
    // call names the port again. So connections are used in the order they
    // were opened, as the peer requires (newest_connections.ts): one
    // opened before the next call never carries batches after it.
    const next = this.#next;
    this.#next = undefined;
    this.#nextReady = false;
    next?.abort(error);
    this.#stopHolding();
    this.#fail(error);
    this.#scheduleReconnect();
  }

  /**
   * Writes a snapshot of this service's holdings on `call`, in batches of
   * their own, before anything queued after it; announcements go on it
   * from then on.
   */
  #writeSnapshot(call: BatchSender): void {
    if (this.#holdings === undefined || this.#closed) return;
    const parts = this.#holdings.snapshot();
    const done = this.#snapshotWaiters ?? quietDeferred();
    this.#snapshotWaiters = undefined;
    this.#holding = true;
    let buffer = new Uint8Array(BATCH_HEADROOM + SNAPSHOT_BATCH_BYTES);
    let bytes = 0;
    const write = (last: boolean) => {
      // Not counted in `counts`: those are batches of deliveries.
      const batchDone = last ? done : quietDeferred();
      call.write(buffer, bytes);
      this.#inflight.push({
        done: batchDone,
        bytes: 0,
        since: Date.now(),
        snapshot: true,
      });
      bytes = 0;
    };
    parts.forEach((part, i) => {
      if (bytes > 0 && bytes + part.byteLength > SNAPSHOT_BATCH_BYTES) {
        write(false);
      }
      if (BATCH_HEADROOM + bytes + part.byteLength > buffer.byteLength) {
        const grown = new Uint8Array(BATCH_HEADROOM + bytes + part.byteLength);
        grown.set(buffer.subarray(0, BATCH_HEADROOM + bytes));
        buffer = grown;
      }
      buffer.set(part, BATCH_HEADROOM + bytes);
      bytes += part.byteLength;
      if (i === parts.length - 1) write(true);
    });
    done.promise.then(() => this.#reconnectMs = RECONNECT_MIN_MS, () => {});
    this.#logger?.debug("wrote a snapshot of holdings to a peer", {
      peer: this.#address,
      via: call.via,
      deliveries: parts.length,
    });
    this.#armWatchdog();
  }

  /** The connection in use takes no announcements (any more). */
  #stopHolding(): void {
    this.#holding = false;
    this.#offered = false;
    const waiters = this.#snapshotWaiters;
    this.#snapshotWaiters = undefined;
    waiters?.resolve();
  }

  /** Reconnects a link with holdings after a backoff. */
  #scheduleReconnect(): void {
    if (
      this.#holdings === undefined || this.#closed ||
      this.#reconnectTimer !== undefined
    ) return;
    const ms = this.#reconnectMs;
    this.#reconnectMs = Math.min(2 * ms, RECONNECT_MAX_MS);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      this.connect();
    }, ms);
  }

  #fail(error: GatewayError): void {
    const failed = this.#inflight.splice(0);
    if (this.#done !== undefined) {
      failed.push({ done: this.#done, bytes: this.#bytes, since: this.#since });
      this.#bytes = 0;
      this.#done = undefined;
    }
    this.#queuedBytes = 0;
    clearTimeout(this.#watchdog);
    this.#watchdog = undefined;
    for (const batch of failed) batch.done.reject(error);
  }
}

/** A deferred whose rejection nobody needs to handle. */
function quietDeferred(): Deferred<void> {
  const d = deferred<void>();
  d.promise.catch(() => {});
  return d;
}
