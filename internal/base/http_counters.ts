// What an internet-facing HTTP port counts about the connections it had to
// cut: the HTTP server (internal/http/) adds, /metrics (internal/ops/) tells.

/** Counters of the limits of one HTTP port. */
export interface HttpCounters {
  /** Connections closed because their request was not in on time. */
  headerTimeouts: number;
  /** Connections waiting for their request, closed to make room. */
  shed: number;
  /** Accepts that failed (and were retried). */
  acceptErrors: number;
  /** Requests refused as malformed or too large (400, 413, 431, ...). */
  badRequests: number;
}

/** Counters at zero. */
export function newHttpCounters(): HttpCounters {
  return { headerTimeouts: 0, shed: 0, acceptErrors: 0, badRequests: 0 };
}
