// Latency over a window from two readings of a cumulative histogram, and
// over several services' windows at once.

import type { LatencyCounts } from "../membership/member_stats.ts";
import type { LatencyView } from "./dashboard_state.ts";

/** Observations between two readings of one histogram. */
export interface LatencyDelta {
  readonly bounds: readonly number[];
  /** Per bucket, one more than `bounds`. */
  readonly counts: readonly number[];
  readonly sumSeconds: number;
}

/**
 * What `newer` counted since `older` (since the start without `older`);
 * undefined when the two do not have the same buckets.
 */
export function latencyDelta(
  older: LatencyCounts | undefined,
  newer: LatencyCounts,
): LatencyDelta | undefined {
  if (older === undefined) return newer;
  if (!sameBounds(older.bounds, newer.bounds)) return undefined;
  return {
    bounds: newer.bounds,
    counts: newer.counts.map((c, i) => Math.max(0, c - (older.counts[i] ?? 0))),
    sumSeconds: Math.max(0, newer.sumSeconds - older.sumSeconds),
  };
}

/**
 * The observations of every delta together; deltas with other buckets than
 * the first are left out of the quantiles but counted in the average.
 */
export function latencyView(deltas: readonly LatencyDelta[]): LatencyView {
  let count = 0;
  let sum = 0;
  let merged: number[] | undefined;
  let bounds: readonly number[] = [];
  for (const d of deltas) {
    const n = d.counts.reduce((a, b) => a + b, 0);
    if (n === 0) continue;
    count += n;
    sum += d.sumSeconds;
    if (merged === undefined) {
      bounds = d.bounds;
      merged = [...d.counts];
    } else if (sameBounds(bounds, d.bounds)) {
      d.counts.forEach((c, i) => merged![i] = (merged![i] ?? 0) + c);
    }
  }
  if (count === 0 || merged === undefined) {
    return { count: 0, avgMs: null, p50Ms: null, p99Ms: null };
  }
  return {
    count,
    avgMs: round(1000 * sum / count),
    p50Ms: quantileMs(bounds, merged, 0.5),
    p99Ms: quantileMs(bounds, merged, 0.99),
  };
}

/**
 * The `q` quantile of a bucketed histogram in milliseconds, interpolated
 * within its bucket (the first bucket from 0); observations past the last
 * bound count as the last bound.
 */
export function quantileMs(
  bounds: readonly number[],
  counts: readonly number[],
  q: number,
): number | null {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i]!;
    if (seen + c >= rank && c > 0) {
      if (i >= bounds.length) return round(1000 * (bounds.at(-1) ?? 0));
      const lower = i === 0 ? 0 : bounds[i - 1]!;
      const upper = bounds[i]!;
      return round(1000 * (lower + (upper - lower) * (rank - seen) / c));
    }
    seen += c;
  }
  return round(1000 * (bounds.at(-1) ?? 0));
}

function sameBounds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Three significant decimals are plenty for a page. */
function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
