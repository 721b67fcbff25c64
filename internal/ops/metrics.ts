// What a service and a register count, for GET /metrics.
//
// The tiny API: hot paths increment a public field (`metrics.messagesIn++`,
// `metrics.api.calls[i]++` for the i-th method of the table,
// `histogram.observe(s)`), which costs no allocation and no lookup. Gauges that the code base already knows (open
// sockets, members) are read at scrape time. `format*Metrics` renders the
// Prometheus text.

import { type HttpCounters, newHttpCounters } from "../base/http_counters.ts";
import type { ApiCounters } from "../api/metered_api.ts";
import { METHOD_NAMES } from "../api/method_table.ts";
import { Histogram, LATENCY_BUCKETS, PrometheusText } from "./prometheus.ts";
import type { DeliveryCounts } from "../delivery/delivery_link.ts";
import type { ReceivedCounts } from "../delivery/receiver.ts";

/** The counters of one service. */
export class ServiceMetrics {
  /** The limits of the WebSocket port. */
  readonly http: HttpCounters = newHttpCounters();
  /** Client WebSockets accepted. */
  connectionsOpened = 0;
  /** Client WebSockets that closed. */
  connectionsClosed = 0;
  /** Frames received from clients. */
  messagesIn = 0;
  /** Payload received from clients (`messageLength` of message_size.ts). */
  bytesIn = 0;
  /** Frames sent to clients. */
  messagesOut = 0;
  /** Payload sent to clients (`messageLength` of message_size.ts). */
  bytesOut = 0;
  /** Clients closed because they did not read fast enough. */
  slowConsumerCloses = 0;
  /** Clients closed with 1008 because they sent faster than their rate limit. */
  rateLimitCloses = 0;
  /** Clients closed with 1009 because a message went past maxMessageBytes. */
  tooBigCloses = 0;
  /** Clients closed with 1002 or 1007 for frames that break the protocol. */
  protocolErrorCloses = 0;
  /** Api calls on this service and their rejections, by method. */
  readonly api: ApiCounters = {
    calls: new Float64Array(METHOD_NAMES.length),
    errors: new Float64Array(METHOD_NAMES.length),
  };
  /** HTTP API requests refused for a missing or wrong secret. */
  httpApiUnauthorized = 0;
  /** Unary calls to peer services, from call to answer, in seconds. */
  readonly peerUnary: Histogram = new Histogram(LATENCY_BUCKETS);
  /** Delivery batches to peers, from first queued to acknowledged. */
  readonly peerDelivery: Histogram = new Histogram(LATENCY_BUCKETS);
  /** Deliveries queued to peers, and batches written, by the way they went. */
  readonly peerTraffic: DeliveryCounts = {
    deliveries: 0,
    grpcBatches: 0,
    portBatches: 0,
  };
  /** Deliveries of messages applied from peers (holder routing shows here). */
  readonly peerReceived: ReceivedCounts = { deliveries: 0 };
  /** Calls with node scope answered for peers, by method. */
  readonly peerCalls: Float64Array = new Float64Array(METHOD_NAMES.length);
}

/** What a service knows at scrape time. */
export interface ServiceGauges {
  readonly ready: boolean;
  readonly connections: number;
  readonly uids: number;
  readonly groups: number;
  readonly members: number;
  /** Sessions of `wsgate.v1` clients kept for a resume (detached). */
  readonly detachedSessions: number;
  /**
   * Holder routing: peers asked about every uid and group because their
   * holdings are not known; undefined without holder routing.
   */
  readonly holderFallbackPeers?: number | undefined;
  /** Holder routing: uids and groups with a holder among the peers. */
  readonly holderNames?: number | undefined;
  /** Bytes of deliveries that wait for peers (queued, not acknowledged). */
  readonly peerQueuedBytes: number;
}

/** The Prometheus text for a service. */
export function formatServiceMetrics(
  m: ServiceMetrics,
  g: ServiceGauges,
): string {
  const byMethod = (values: Float64Array) =>
    METHOD_NAMES.map((method, i) => [{ method }, values[i]!] as const);
  return new PrometheusText()
    .gauge(
      "wsgate_ready",
      "1 once the service has received a member list, 0 before or while closing.",
      g.ready ? 1 : 0,
    )
    .gauge("wsgate_connections", "Open client WebSockets.", g.connections)
    .counter(
      "wsgate_connections_opened_total",
      "Client WebSockets accepted.",
      m.connectionsOpened,
    )
    .counter(
      "wsgate_connections_closed_total",
      "Client WebSockets closed.",
      m.connectionsClosed,
    )
    .counter(
      "wsgate_messages_received_total",
      "Messages received from clients.",
      m.messagesIn,
    )
    .counter(
      "wsgate_bytes_received_total",
      "Payload received from clients: bytes of binary frames, UTF-16 code units of text frames.",
      m.bytesIn,
    )
    .counter(
      "wsgate_messages_sent_total",
      "Messages sent to clients.",
      m.messagesOut,
    )
    .counter(
      "wsgate_bytes_sent_total",
      "Payload sent to clients: bytes of binary frames, UTF-16 code units of text frames.",
      m.bytesOut,
    )
    .counter(
      "wsgate_slow_consumer_closes_total",
      "Clients closed because they did not read fast enough.",
      m.slowConsumerCloses,
    )
    .counter(
      "wsgate_rate_limit_closes_total",
      "Clients closed with 1008 because they sent faster than their rate limit.",
      m.rateLimitCloses,
    )
    .counter(
      "wsgate_message_too_big_closes_total",
      "Clients closed with 1009 because a message (all its fragments) went past maxMessageBytes.",
      m.tooBigCloses,
    )
    .counter(
      "wsgate_protocol_error_closes_total",
      "Clients closed with 1002 or 1007 for frames that break the WebSocket protocol or text that is not UTF-8.",
      m.protocolErrorCloses,
    )
    .counter(
      "wsgate_api_calls_total",
      "Api calls on this service (hooks, gRPC and HTTP backends), by method.",
      byMethod(m.api.calls),
    )
    .counter(
      "wsgate_api_errors_total",
      "Api calls on this service that rejected, by method.",
      byMethod(m.api.errors),
    )
    .counter(
      "wsgate_http_api_unauthorized_total",
      "HTTP API requests refused for a missing or wrong secret.",
      m.httpApiUnauthorized,
    )
    .histogram(
      "wsgate_peer_rpc_duration_seconds",
      "Calls to peer services: unary calls from call to answer, delivery batches from first queued to acknowledged.",
      [[{ kind: "unary" }, m.peerUnary], [
        { kind: "delivery" },
        m.peerDelivery,
      ]],
    )
    .counter(
      "wsgate_peer_batches_total",
      "Delivery batches written to peer services, by the way they went: the gRPC Deliver stream or the peer's delivery port.",
      [
        [{ via: "grpc" }, m.peerTraffic.grpcBatches],
        [{ via: "delivery_port" }, m.peerTraffic.portBatches],
      ],
    )
    .counter(
      "wsgate_peer_deliveries_total",
      "Deliveries queued to peer services: one per message per peer it goes to.",
      m.peerTraffic.deliveries,
    )
    .counter(
      "wsgate_peer_deliveries_received_total",
      "Deliveries of messages applied from peer services: one per message per receiving service, whether or not a client here got it.",
      m.peerReceived.deliveries,
    )
    .counter(
      "wsgate_peer_calls_received_total",
      "Calls with node scope that peer services made to this one (their share of an Api call), by method.",
      byMethod(m.peerCalls),
    )
    .gauge(
      "wsgate_members",
      "Services in this service's member list, itself included.",
      g.members,
    )
    .gauge(
      "wsgate_peer_queued_bytes",
      "Bytes of deliveries queued for peer services and not yet acknowledged.",
      g.peerQueuedBytes,
    )
    .with((text) => {
      if (g.holderFallbackPeers === undefined) return;
      text
        .gauge(
          "wsgate_holder_fallback_peers",
          "Peers asked about every uid and group because their holdings are not known (no snapshot yet, link broken, or no holder routing there).",
          g.holderFallbackPeers,
        )
        .gauge(
          "wsgate_holder_index_names",
          "Uids and groups that have a holder among the peers, as they announced.",
          g.holderNames ?? 0,
        );
    })
    .gauge("wsgate_uids", "Uids bound on this service.", g.uids)
    .gauge("wsgate_groups", "Non-empty groups on this service.", g.groups)
    .gauge(
      "wsgate_sessions_detached",
      "Sessions of wsgate.v1 clients whose connection broke, kept for a resume.",
      g.detachedSessions,
    )
    .with(httpCounterLines(m.http))
    .gauge(
      "process_resident_memory_bytes",
      "Resident memory of the process.",
      Deno.memoryUsage().rss,
    )
    .toString();
}

/** The counters of one register. */
export class RegisterMetrics {
  /** The limits of the operator HTTP port. */
  readonly http: HttpCounters = newHttpCounters();
  /** Join streams opened by services. */
  joins = 0;
  /** Join streams that ended (the service left, died or was replaced). */
  leaves = 0;
}

/** What a register knows at scrape time. */
export interface RegisterGauges {
  readonly members: number;
  readonly version: bigint;
}

/** The Prometheus text for a register. */
export function formatRegisterMetrics(
  m: RegisterMetrics,
  g: RegisterGauges,
): string {
  return new PrometheusText()
    .gauge("wsgate_register_members", "Services in the member list.", g.members)
    .gauge(
      "wsgate_register_member_list_version",
      "Version of the member list; it grows on every change.",
      Number(g.version),
    )
    .counter(
      "wsgate_register_joins_total",
      "Join streams opened by services.",
      m.joins,
    )
    .counter(
      "wsgate_register_leaves_total",
      "Join streams that ended.",
      m.leaves,
    )
    .with(httpCounterLines(m.http))
    .gauge(
      "process_resident_memory_bytes",
      "Resident memory of the process.",
      Deno.memoryUsage().rss,
    )
    .toString();
}

/** The counters of an HTTP port's limits, as Prometheus families. */
export function httpCounterLines(
  c: HttpCounters,
): (text: PrometheusText) => void {
  return (text) =>
    void text
      .counter(
        "wsgate_http_header_timeouts_total",
        "Connections closed because their request headers (or body) did not arrive within the header timeout.",
        c.headerTimeouts,
      )
      .counter(
        "wsgate_http_pending_shed_total",
        "Connections still sending their request closed to make room: more than maxPendingConnections were waiting.",
        c.shed,
      )
      .counter(
        "wsgate_http_accept_errors_total",
        "Failed accepts on the HTTP port (for example out of file descriptors); each was retried.",
        c.acceptErrors,
      )
      .counter(
        "wsgate_http_bad_requests_total",
        "Requests refused as malformed or too large (400, 413, 431).",
        c.badRequests,
      );
}
