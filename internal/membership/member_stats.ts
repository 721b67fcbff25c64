// What a member reports of itself to the registers that ask for it
// (MemberList.stats_interval_ms), for their dashboards: the plain shape on
// both sides, and the checked conversion to and from the wire.

import { create } from "npm:@bufbuild/protobuf@2.17.0";
import {
  MemberState,
  type MemberStats as MemberStatsMessage,
  MemberStatsSchema,
} from "../../proto/gen/websocket/v1/register_pb.ts";
import { GatewayError } from "../../errors.ts";
import { isNodeId } from "../hub/client_id.ts";
import { describe } from "../base/describe.ts";

/** The longest `name` a report carries; a longer one is cut. */
export const MAX_STATS_NAME_LENGTH = 128;
/** The longest address (`host:port`) a report carries. */
export const MAX_STATS_ADDRESS_LENGTH = 300;
/** The most register links a report carries; more are left out. */
export const MAX_STATS_LINKS = 32;
/** The most histogram bounds a report carries. */
const MAX_HISTOGRAM_BOUNDS = 64;

/** Where a member is in its life. */
export type MemberPhase = "starting" | "ready" | "closing";

/** A latency histogram counted since the member started, in seconds. */
export interface LatencyCounts {
  /** Upper bounds, ascending; a last bucket without bound (+Inf) follows. */
  readonly bounds: readonly number[];
  /** Observations per bucket (not cumulative): one more than `bounds`. */
  readonly counts: readonly number[];
  /** The sum of every observation. */
  readonly sumSeconds: number;
}

/** One of a member's Join links, as the member sees it. */
export interface RegisterLinkState {
  /** The register's address as the member dials it. */
  readonly address: string;
  /** The register process that pushed the last list, or `""`. */
  readonly registerId: string;
  /** Whether the Join stream is open now. */
  readonly connected: boolean;
  /** For how long it has been open; 0 when not connected. */
  readonly connectedMs: number;
}

/**
 * What a service knows of itself; the Join links add the node id and the
 * state of every link ({@linkcode MemberStats}). Counters count from the
 * service's start and only grow.
 */
export interface MemberFigures {
  readonly name: string;
  /** `host:port` of the WebSocket port, or `""` when there is none. */
  readonly websocketAddress: string;
  readonly uptimeMs: number;
  readonly state: MemberPhase;
  readonly clients: number;
  readonly uids: number;
  readonly groups: number;
  readonly messagesIn: number;
  readonly messagesOut: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly connectionsOpened: number;
  readonly slowConsumerCloses: number;
  readonly rateLimitCloses: number;
  readonly tooBigCloses: number;
  readonly protocolErrorCloses: number;
  /** Delivery batches to peers, from first queued to acknowledged. */
  readonly peerDelivery: LatencyCounts;
  readonly rssBytes: number;
}

/** A member's whole report, as it travels in ReportStats. */
export interface MemberStats extends MemberFigures {
  readonly nodeId: string;
  readonly registers: readonly RegisterLinkState[];
}

const TO_STATE: Record<MemberPhase, MemberState> = {
  starting: MemberState.STARTING,
  ready: MemberState.READY,
  closing: MemberState.CLOSING,
};

/** The wire form of a report, with strings and lists cut to their bounds. */
export function toStatsMessage(stats: MemberStats): MemberStatsMessage {
  const count = (n: number) => BigInt(Math.max(0, Math.trunc(n)));
  return create(MemberStatsSchema, {
    nodeId: stats.nodeId,
    name: stats.name.slice(0, MAX_STATS_NAME_LENGTH),
    websocketAddress: stats.websocketAddress.length > MAX_STATS_ADDRESS_LENGTH
      ? ""
      : stats.websocketAddress,
    uptimeMs: count(stats.uptimeMs),
    state: TO_STATE[stats.state],
    clients: Math.min(stats.clients, 0xffffffff),
    uids: Math.min(stats.uids, 0xffffffff),
    groups: Math.min(stats.groups, 0xffffffff),
    messagesIn: count(stats.messagesIn),
    messagesOut: count(stats.messagesOut),
    bytesIn: count(stats.bytesIn),
    bytesOut: count(stats.bytesOut),
    connectionsOpened: count(stats.connectionsOpened),
    slowConsumerCloses: count(stats.slowConsumerCloses),
    rateLimitCloses: count(stats.rateLimitCloses),
    tooBigCloses: count(stats.tooBigCloses),
    protocolErrorCloses: count(stats.protocolErrorCloses),
    peerDelivery: {
      bounds: [...stats.peerDelivery.bounds],
      counts: stats.peerDelivery.counts.map(count),
      sumSeconds: stats.peerDelivery.sumSeconds,
    },
    registers: stats.registers
      .filter((r) => r.address.length <= MAX_STATS_ADDRESS_LENGTH)
      .slice(0, MAX_STATS_LINKS)
      .map((r) => ({
        address: r.address,
        registerId: r.registerId,
        connected: r.connected,
        connectedMs: count(r.connectedMs),
      })),
    rssBytes: count(stats.rssBytes),
  });
}

/**
 * The plain form of a report from the wire.
 *
 * @throws {GatewayError} `invalid_argument`, naming the first field that is
 * missing, too long or out of shape.
 */
export function fromStatsMessage(message: MemberStatsMessage): MemberStats {
  const bad = (field: string, why: string) =>
    new GatewayError(
      "invalid_argument",
      `Cannot take the stats report: ${field} ${why}`,
    );
  if (!isNodeId(message.nodeId)) {
    throw bad(
      "stats.node_id",
      `${describe(message.nodeId)} is not a node id made by a service`,
    );
  }
  const text = (field: string, value: string, max: number) => {
    if (value.length > max) {
      throw bad(field, `has ${value.length} characters, more than ${max}`);
    }
    return value;
  };
  const state = phaseOf(message.state);
  if (state === undefined) {
    throw bad("stats.state", `${message.state} is not a MemberState`);
  }
  const histogram = message.peerDelivery;
  const bounds = histogram?.bounds ?? [];
  const counts = (histogram?.counts ?? []).map(Number);
  if (histogram !== undefined) {
    if (bounds.length > MAX_HISTOGRAM_BOUNDS) {
      throw bad(
        "stats.peer_delivery.bounds",
        `has ${bounds.length} entries, more than ${MAX_HISTOGRAM_BOUNDS}`,
      );
    }
    const ascending = bounds.every((b, i) =>
      Number.isFinite(b) && (i === 0 || b > bounds[i - 1]!)
    );
    if (!ascending) {
      throw bad("stats.peer_delivery.bounds", "are not finite and ascending");
    }
    if (counts.length !== bounds.length + 1) {
      throw bad(
        "stats.peer_delivery.counts",
        `has ${counts.length} entries for ${bounds.length} bounds (one more is needed)`,
      );
    }
    if (!Number.isFinite(histogram.sumSeconds) || histogram.sumSeconds < 0) {
      throw bad("stats.peer_delivery.sum_seconds", "is not a finite sum");
    }
  }
  if (message.registers.length > MAX_STATS_LINKS) {
    throw bad(
      "stats.registers",
      `has ${message.registers.length} links, more than ${MAX_STATS_LINKS}`,
    );
  }
  const registers = message.registers.map((r, i) => {
    if (r.registerId !== "" && !isNodeId(r.registerId)) {
      throw bad(
        `stats.registers[${i}].register_id`,
        `${describe(r.registerId)} is not a register id`,
      );
    }
    return {
      address: text(
        `stats.registers[${i}].address`,
        r.address,
        MAX_STATS_ADDRESS_LENGTH,
      ),
      registerId: r.registerId,
      connected: r.connected,
      connectedMs: Number(r.connectedMs),
    };
  });
  return {
    nodeId: message.nodeId,
    name: text("stats.name", message.name, MAX_STATS_NAME_LENGTH),
    websocketAddress: text(
      "stats.websocket_address",
      message.websocketAddress,
      MAX_STATS_ADDRESS_LENGTH,
    ),
    uptimeMs: Number(message.uptimeMs),
    state,
    clients: message.clients,
    uids: message.uids,
    groups: message.groups,
    messagesIn: Number(message.messagesIn),
    messagesOut: Number(message.messagesOut),
    bytesIn: Number(message.bytesIn),
    bytesOut: Number(message.bytesOut),
    connectionsOpened: Number(message.connectionsOpened),
    slowConsumerCloses: Number(message.slowConsumerCloses),
    rateLimitCloses: Number(message.rateLimitCloses),
    tooBigCloses: Number(message.tooBigCloses),
    protocolErrorCloses: Number(message.protocolErrorCloses),
    peerDelivery: {
      bounds: [...bounds],
      counts,
      sumSeconds: histogram?.sumSeconds ?? 0,
    },
    registers,
    rssBytes: Number(message.rssBytes),
  };
}

function phaseOf(state: MemberState): MemberPhase | undefined {
  switch (state) {
    case MemberState.STARTING:
      return "starting";
    case MemberState.READY:
      return "ready";
    case MemberState.CLOSING:
      return "closing";
    default:
      return undefined;
  }
}
