// What a register's dashboard knows: the last reports of its members, a
// short history of each to derive rates and latency from, and a longer
// history of the cluster's figures, all bounded.

import type { Member } from "../membership/member_table.ts";
import type { LatencyCounts, MemberStats } from "../membership/member_stats.ts";
import { SampleRing } from "./sample_ring.ts";
import { type LatencyDelta, latencyDelta, latencyView } from "./latency.ts";
import {
  type ClosesView,
  type ClusterPoint,
  DASHBOARD_STATE_VERSION,
  type DashboardState,
  type RegisterView,
  type ServiceView,
} from "./dashboard_state.ts";

/** Options of {@linkcode DashboardStats}. */
export interface DashboardStatsOptions {
  /** How often members report, in milliseconds. */
  readonly intervalMs: number;
  /**
   * Members whose reports are kept, at most; reports of more are dropped.
   *
   * @default {512}
   */
  readonly maxTracked?: number;
  /**
   * Services listed in a state, at most (the totals count every one).
   *
   * @default {100}
   */
  readonly maxShown?: number;
  /**
   * How far back the cluster history goes, in milliseconds.
   *
   * @default {300000}
   */
  readonly historyMs?: number;
}

/** What the register knows of itself, for {@linkcode DashboardStats.state}. */
export interface RegisterSelf {
  readonly registerId: string;
  readonly address: string;
  readonly uptimeMs: number;
  readonly members: readonly Member[];
  readonly memberListVersion: number;
}

/** Registers listed in a state, at most. */
const MAX_REGISTERS_SHOWN = 32;
/** Points of a service's rate history in a state, at most. */
const MAX_SERVICE_POINTS = 30;
/** The window of a service's latency figures. */
const LATENCY_WINDOW_MS = 60_000;
/** Points of the cluster history, at most, whatever the interval. */
const MAX_HISTORY_POINTS = 300;
/** Reports kept per member, at most, whatever the interval. */
const MAX_SAMPLES = 62;

/** One report's counters, as received. */
interface Sample {
  /** `performance.now()` when it arrived. */
  readonly at: number;
  readonly messagesIn: number;
  readonly messagesOut: number;
  readonly peerDelivery: LatencyCounts;
}

interface Tracked {
  latest: MemberStats;
  readonly samples: SampleRing<Sample>;
}

/** A member's figures now, derived from its reports. */
interface MemberNow {
  readonly fresh: boolean;
  readonly inPerSec: number;
  readonly outPerSec: number;
  /** Peer delivery over its last report interval. */
  readonly lastDelivery: LatencyDelta | undefined;
  /** Peer delivery over the last minute. */
  readonly minuteDelivery: LatencyDelta | undefined;
}

/** The reports of a register's members, and what the dashboard shows. */
export class DashboardStats {
  readonly #intervalMs: number;
  readonly #maxTracked: number;
  readonly #maxShown: number;
  readonly #samplesPerMember: number;
  readonly #tracked = new Map<string, Tracked>();
  readonly #history: SampleRing<ClusterPoint>;

  constructor(options: DashboardStatsOptions) {
    const {
      intervalMs,
      maxTracked = 512,
      maxShown = 100,
      historyMs = 300_000,
    } = options;
    this.#intervalMs = intervalMs;
    this.#maxTracked = maxTracked;
    this.#maxShown = maxShown;
    this.#samplesPerMember = Math.min(
      MAX_SAMPLES,
      Math.max(
        MAX_SERVICE_POINTS + 1,
        Math.ceil(LATENCY_WINDOW_MS / intervalMs) + 1,
      ),
    );
    this.#history = new SampleRing(
      Math.min(
        MAX_HISTORY_POINTS,
        Math.max(2, Math.ceil(historyMs / intervalMs)),
      ),
    );
  }

  /** How many members' reports it keeps. */
  get tracked(): number {
    return this.#tracked.size;
  }

  /**
   * Keeps a member's report; false when it is a new member past
   * `maxTracked` (its report is dropped).
   */
  record(stats: MemberStats): boolean {
    let tracked = this.#tracked.get(stats.nodeId);
    if (tracked === undefined) {
      if (this.#tracked.size >= this.#maxTracked) return false;
      tracked = {
        latest: stats,
        samples: new SampleRing(this.#samplesPerMember),
      };
      this.#tracked.set(stats.nodeId, tracked);
    }
    tracked.latest = stats;
    tracked.samples.push({
      at: performance.now(),
      messagesIn: stats.messagesIn,
      messagesOut: stats.messagesOut,
      peerDelivery: stats.peerDelivery,
    });
    return true;
  }

  /** Forgets a member that left. */
  forget(nodeId: string): void {
    this.#tracked.delete(nodeId);
  }

  /** Adds a point to the cluster history: call it every interval. */
  sample(): void {
    const now = performance.now();
    let clients = 0;
    let inPerSec = 0;
    let outPerSec = 0;
    const deliveries: LatencyDelta[] = [];
    for (const tracked of this.#tracked.values()) {
      const figures = this.#memberNow(tracked, now);
      if (!figures.fresh) continue;
      clients += tracked.latest.clients;
      inPerSec += figures.inPerSec;
      outPerSec += figures.outPerSec;
      if (figures.lastDelivery) deliveries.push(figures.lastDelivery);
    }
    const delivery = latencyView(deliveries);
    this.#history.push({
      t: Date.now(),
      clients,
      messagesInPerSec: rate(inPerSec),
      messagesOutPerSec: rate(outPerSec),
      peerDeliveryP99Ms: delivery.p99Ms,
      peerDeliveryAvgMs: delivery.avgMs,
    });
  }

  /** The dashboard's view of the cluster now. */
  state(self: RegisterSelf): DashboardState {
    const now = performance.now();
    const services: ServiceView[] = [];
    const minute: LatencyDelta[] = [];
    const closes = {
      slowConsumer: 0,
      rateLimit: 0,
      tooBig: 0,
      protocolError: 0,
    };
    let clients = 0;
    let uids = 0;
    let groups = 0;
    let inPerSec = 0;
    let outPerSec = 0;
    for (const member of self.members) {
      const tracked = this.#tracked.get(member.nodeId);
      const view = tracked === undefined
        ? noStatsView(member)
        : this.#serviceView(member, tracked, now);
      services.push(view);
      clients += view.clients;
      uids += view.uids;
      groups += view.groups;
      inPerSec += view.messagesInPerSec;
      outPerSec += view.messagesOutPerSec;
      closes.slowConsumer += view.closes.slowConsumer;
      closes.rateLimit += view.closes.rateLimit;
      closes.tooBig += view.closes.tooBig;
      closes.protocolError += view.closes.protocolError;
      if (tracked !== undefined) {
        const figures = this.#memberNow(tracked, now);
        if (figures.fresh && figures.minuteDelivery) {
          minute.push(figures.minuteDelivery);
        }
      }
    }
    services.sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : a.nodeId < b.nodeId ? -1 : 1
    );
    const registers = this.#registerViews(self, now);
    return {
      version: DASHBOARD_STATE_VERSION,
      now: Date.now(),
      intervalMs: this.#intervalMs,
      register: {
        registerId: self.registerId,
        address: self.address,
        uptimeMs: Math.round(self.uptimeMs),
        members: self.members.length,
        memberListVersion: self.memberListVersion,
      },
      registers: registers.slice(0, MAX_REGISTERS_SHOWN),
      omittedRegisters: Math.max(0, registers.length - MAX_REGISTERS_SHOWN),
      totals: {
        services: self.members.length,
        clients,
        uids,
        groups,
        messagesInPerSec: rate(inPerSec),
        messagesOutPerSec: rate(outPerSec),
        peerDelivery: latencyView(minute),
        closes,
      },
      services: services.slice(0, this.#maxShown),
      omittedServices: Math.max(0, services.length - this.#maxShown),
      history: this.#history.toArray(),
    };
  }

  #memberNow(tracked: Tracked, now: number): MemberNow {
    const { samples } = tracked;
    const last = samples.at(-1)!;
    const previous = samples.at(-2);
    const fresh = now - last.at <= 3 * this.#intervalMs + 1000;
    const seconds = previous === undefined ? 0 : (last.at - previous.at) / 1000;
    let oldest = last;
    for (let i = samples.length - 2; i >= 0; i--) {
      const s = samples.at(i)!;
      if (last.at - s.at > LATENCY_WINDOW_MS) break;
      oldest = s;
    }
    return {
      fresh,
      inPerSec: fresh && seconds > 0
        ? Math.max(0, last.messagesIn - previous!.messagesIn) / seconds
        : 0,
      outPerSec: fresh && seconds > 0
        ? Math.max(0, last.messagesOut - previous!.messagesOut) / seconds
        : 0,
      lastDelivery: previous === undefined
        ? undefined
        : latencyDelta(previous.peerDelivery, last.peerDelivery),
      minuteDelivery: oldest === last
        ? undefined
        : latencyDelta(oldest.peerDelivery, last.peerDelivery),
    };
  }

  #serviceView(member: Member, tracked: Tracked, now: number): ServiceView {
    const stats = tracked.latest;
    const figures = this.#memberNow(tracked, now);
    const samples = tracked.samples.toArray();
    const inHistory: number[] = [];
    const outHistory: number[] = [];
    for (
      let i = Math.max(1, samples.length - MAX_SERVICE_POINTS);
      i < samples.length;
      i++
    ) {
      const a = samples[i - 1]!;
      const b = samples[i]!;
      const seconds = Math.max((b.at - a.at) / 1000, 0.001);
      inHistory.push(rate(Math.max(0, b.messagesIn - a.messagesIn) / seconds));
      outHistory.push(
        rate(Math.max(0, b.messagesOut - a.messagesOut) / seconds),
      );
    }
    const age = now - samples.at(-1)!.at;
    return {
      nodeId: member.nodeId,
      name: stats.name === "" ? member.nodeId : stats.name,
      rpcAddress: member.rpcAddress,
      websocketAddress: stats.websocketAddress,
      state: figures.fresh ? stats.state : "stale",
      uptimeMs: Math.round(stats.uptimeMs + age),
      reportAgeMs: Math.round(age),
      clients: stats.clients,
      uids: stats.uids,
      groups: stats.groups,
      messagesInPerSec: rate(figures.inPerSec),
      messagesOutPerSec: rate(figures.outPerSec),
      messagesIn: stats.messagesIn,
      messagesOut: stats.messagesOut,
      peerDelivery: latencyView(
        figures.minuteDelivery ? [figures.minuteDelivery] : [],
      ),
      closes: closesOf(stats),
      rssBytes: stats.rssBytes,
      history: { messagesInPerSec: inHistory, messagesOutPerSec: outHistory },
    };
  }

  /**
   * The registers that services report links to, by the address they dial,
   * this one first (also when no service reports it yet).
   */
  #registerViews(self: RegisterSelf, now: number): RegisterView[] {
    interface Seen {
      registerId: string;
      linked: number;
      connected: number;
      uptimeMs: number | null;
    }
    const byAddress = new Map<string, Seen>();
    for (const tracked of this.#tracked.values()) {
      const age = now - tracked.samples.at(-1)!.at;
      for (const link of tracked.latest.registers) {
        let seen = byAddress.get(link.address);
        if (seen === undefined) {
          if (byAddress.size >= 4 * MAX_REGISTERS_SHOWN) continue;
          seen = { registerId: "", linked: 0, connected: 0, uptimeMs: null };
          byAddress.set(link.address, seen);
        }
        seen.linked++;
        if (link.connected) {
          seen.connected++;
          seen.registerId = link.registerId;
          seen.uptimeMs = Math.max(
            seen.uptimeMs ?? 0,
            Math.round(link.connectedMs + age),
          );
        } else if (seen.registerId === "") {
          seen.registerId = link.registerId;
        }
      }
    }
    const views: RegisterView[] = [...byAddress].map(([address, seen]) => {
      const isSelf = seen.registerId === self.registerId;
      return {
        address,
        registerId: seen.registerId,
        self: isSelf,
        state: isSelf
          ? "up"
          : seen.connected === 0
          ? "down"
          : seen.connected === seen.linked
          ? "up"
          : "partial",
        linkedServices: seen.linked,
        connectedServices: seen.connected,
        uptimeMs: isSelf ? Math.round(self.uptimeMs) : seen.uptimeMs,
      };
    });
    if (!views.some((v) => v.self)) {
      views.push({
        address: self.address,
        registerId: self.registerId,
        self: true,
        state: "up",
        linkedServices: 0,
        connectedServices: 0,
        uptimeMs: Math.round(self.uptimeMs),
      });
    }
    views.sort((a, b) =>
      a.self !== b.self ? (a.self ? -1 : 1) : a.address < b.address ? -1 : 1
    );
    return views;
  }
}

function noStatsView(member: Member): ServiceView {
  return {
    nodeId: member.nodeId,
    name: member.nodeId,
    rpcAddress: member.rpcAddress,
    websocketAddress: "",
    state: "no-stats",
    uptimeMs: null,
    reportAgeMs: null,
    clients: 0,
    uids: 0,
    groups: 0,
    messagesInPerSec: 0,
    messagesOutPerSec: 0,
    messagesIn: 0,
    messagesOut: 0,
    peerDelivery: { count: 0, avgMs: null, p50Ms: null, p99Ms: null },
    closes: { slowConsumer: 0, rateLimit: 0, tooBig: 0, protocolError: 0 },
    rssBytes: null,
    history: { messagesInPerSec: [], messagesOutPerSec: [] },
  };
}

function closesOf(stats: MemberStats): ClosesView {
  return {
    slowConsumer: stats.slowConsumerCloses,
    rateLimit: stats.rateLimitCloses,
    tooBig: stats.tooBigCloses,
    protocolError: stats.protocolErrorCloses,
  };
}

/** Rates with two decimals. */
function rate(perSec: number): number {
  return Math.round(perSec * 100) / 100;
}
