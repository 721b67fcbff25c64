// The JSON that `GET /dashboard/state` answers, and that the dashboard
// page draws: one register's view of the cluster. docs/dashboard.md
// describes it for scripts; `version` grows when a field changes meaning.

/** The version of {@linkcode DashboardState} this code writes. */
export const DASHBOARD_STATE_VERSION = 1;

/**
 * Latency over a window, in milliseconds; `null` where the window saw no
 * observation.
 */
export interface LatencyView {
  /** Observations in the window. */
  readonly count: number;
  readonly avgMs: number | null;
  /** Estimated from histogram buckets, as Prometheus' histogram_quantile. */
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
}

/** Clients closed by the service's limits, counted since it started. */
export interface ClosesView {
  /** Did not read fast enough (`maxBufferedBytes`, `maxQueuedMessages`). */
  readonly slowConsumer: number;
  /** Sent faster than `rateLimit` (1008). */
  readonly rateLimit: number;
  /** Sent a message past `maxMessageBytes` (1009). */
  readonly tooBig: number;
  /** Broke the WebSocket protocol, or sent text that is not UTF-8. */
  readonly protocolError: number;
}

/** A service as this register knows it. */
export interface ServiceView {
  readonly nodeId: string;
  /** Its name, or its node id when it reports none (or no stats at all). */
  readonly name: string;
  /** Where peers and backends call it, as it joined. */
  readonly rpcAddress: string;
  /** `host:port` of its WebSocket port, `""` when unknown or none. */
  readonly websocketAddress: string;
  /**
   * `"starting"`, `"ready"` or `"closing"` as it reported; `"stale"` when
   * its last report is older than three intervals; `"no-stats"` when it
   * never reported (a service from before reports, or one just joined).
   */
  readonly state: "starting" | "ready" | "closing" | "stale" | "no-stats";
  /** Milliseconds since it started, `null` without stats. */
  readonly uptimeMs: number | null;
  /** Milliseconds since its last report, `null` without one. */
  readonly reportAgeMs: number | null;
  readonly clients: number;
  /** Uids bound on this service. */
  readonly uids: number;
  /** Non-empty groups on this service. */
  readonly groups: number;
  /** Messages from its clients per second, over its last report interval. */
  readonly messagesInPerSec: number;
  /** Messages to its clients per second, over its last report interval. */
  readonly messagesOutPerSec: number;
  /** Counted since it started. */
  readonly messagesIn: number;
  readonly messagesOut: number;
  /** Delivery batches to peers, over the last minute. */
  readonly peerDelivery: LatencyView;
  readonly closes: ClosesView;
  readonly rssBytes: number | null;
  /** Messages per second over the last reports, oldest first. */
  readonly history: {
    readonly messagesInPerSec: readonly number[];
    readonly messagesOutPerSec: readonly number[];
  };
}

/** A register, this one or one that services report they are joined to. */
export interface RegisterView {
  /** As this register listens (itself), or as services dial it. */
  readonly address: string;
  /** Its process id, `""` when no service has heard from it yet. */
  readonly registerId: string;
  /** Whether this is the register that answered. */
  readonly self: boolean;
  /**
   * `"up"`: every service that reports it is connected (this register is
   * always up); `"down"`: none is; `"partial"`: some are.
   */
  readonly state: "up" | "down" | "partial";
  /** Services that report a link to it, and how many are connected. */
  readonly linkedServices: number;
  readonly connectedServices: number;
  /**
   * Milliseconds it has been up: its own uptime for itself, else the
   * longest a service has been connected to it; `null` when none is.
   */
  readonly uptimeMs: number | null;
}

/** Cluster figures at one moment of the history. */
export interface ClusterPoint {
  /** Milliseconds since the epoch. */
  readonly t: number;
  readonly clients: number;
  readonly messagesInPerSec: number;
  readonly messagesOutPerSec: number;
  /** Peer delivery latency over the services' last report intervals. */
  readonly peerDeliveryP99Ms: number | null;
  readonly peerDeliveryAvgMs: number | null;
}

/** Sums over the services this register knows. */
export interface ClusterTotals {
  readonly services: number;
  readonly clients: number;
  /** The sum of every service's uids: a uid on two services counts twice. */
  readonly uids: number;
  /** The sum of every service's groups: a group on two services counts twice. */
  readonly groups: number;
  readonly messagesInPerSec: number;
  readonly messagesOutPerSec: number;
  /** Over the last minute, all services together. */
  readonly peerDelivery: LatencyView;
  readonly closes: ClosesView;
}

/** What `GET /dashboard/state` answers. */
export interface DashboardState {
  readonly version: typeof DASHBOARD_STATE_VERSION;
  /** When this was made, in milliseconds since the epoch. */
  readonly now: number;
  /** How often services report, and so how often the page polls. */
  readonly intervalMs: number;
  /** The register that answered. */
  readonly register: {
    readonly registerId: string;
    readonly address: string;
    readonly uptimeMs: number;
    readonly members: number;
    readonly memberListVersion: number;
  };
  readonly registers: readonly RegisterView[];
  /** Registers left out past the bound. */
  readonly omittedRegisters: number;
  readonly totals: ClusterTotals;
  /** Services by name, then node id, at most a bounded number. */
  readonly services: readonly ServiceView[];
  /** Services left out past the bound (the totals count them). */
  readonly omittedServices: number;
  /** One point per interval over the last minutes, oldest first. */
  readonly history: readonly ClusterPoint[];
}
