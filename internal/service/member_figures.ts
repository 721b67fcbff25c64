// What a service tells the registers' dashboards about itself: its
// counters and gauges, read when a report is due.

import type { MemberFigures, MemberPhase } from "../membership/member_stats.ts";
import type { ServiceMetrics } from "../ops/metrics.ts";

/** Where {@linkcode memberFigures} reads a service's figures. */
export interface FigureSources {
  readonly name: string;
  /** `host:port` of the WebSocket port, or `""` when it has none. */
  readonly websocketAddress: string;
  readonly metrics: ServiceMetrics;
  /** Open client WebSockets now. */
  readonly connections: () => number;
  /** Uids bound and non-empty groups on this service now. */
  readonly hub: { readonly uidCount: number; readonly groupCount: number };
  readonly phase: () => MemberPhase;
}

/**
 * A function that reads a service's figures, for the `stats` option of
 * `joinRegisters`; its uptime counts from this call.
 */
export function memberFigures(sources: FigureSources): () => MemberFigures {
  const { name, websocketAddress, metrics, connections, hub, phase } = sources;
  const started = performance.now();
  return () => ({
    name,
    websocketAddress,
    uptimeMs: performance.now() - started,
    state: phase(),
    clients: connections(),
    uids: hub.uidCount,
    groups: hub.groupCount,
    messagesIn: metrics.messagesIn,
    messagesOut: metrics.messagesOut,
    bytesIn: metrics.bytesIn,
    bytesOut: metrics.bytesOut,
    connectionsOpened: metrics.connectionsOpened,
    slowConsumerCloses: metrics.slowConsumerCloses,
    rateLimitCloses: metrics.rateLimitCloses,
    tooBigCloses: metrics.tooBigCloses,
    protocolErrorCloses: metrics.protocolErrorCloses,
    peerDelivery: {
      bounds: metrics.peerDelivery.bounds,
      counts: [...metrics.peerDelivery.counts],
      sumSeconds: metrics.peerDelivery.sum,
    },
    rssBytes: Deno.memoryUsage().rss,
  });
}
