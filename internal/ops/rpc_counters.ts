// Counters of what this process asks of its peers, for the benchmark
// (bench/) to show how many RPCs an Api call costs. Plain increments on
// the hot path; shared by every service of the process.

/** Calls and deliveries this process sent to peer services. */
export const rpcCounters: {
  /** Unary calls (queries and per-client operations). */
  unaryCalls: number;
  /** Deliveries queued on Deliver streams (one per peer it goes to). */
  deliveries: number;
  /** Batches written on Deliver streams. */
  batches: number;
} = { unaryCalls: 0, deliveries: 0, batches: 0 };
