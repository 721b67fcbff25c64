// The Prometheus text exposition format (version 0.0.4): a small writer for
// counters, gauges and histograms, used at scrape time only.

/** The content type of a Prometheus text response. */
export const PROMETHEUS_CONTENT_TYPE =
  "text/plain; version=0.0.4; charset=utf-8";

/** Label names and values of one sample. */
export type Labels = Readonly<Record<string, string>>;

/**
 * A latency histogram with fixed buckets. `observe` is a short linear scan
 * and two additions: no allocation, fit for hot paths.
 */
export class Histogram {
  /** Upper bounds, ascending, in the unit observed (seconds). */
  readonly bounds: readonly number[];
  /** Observations per bucket (not cumulative); the last is `+Inf`. */
  readonly counts: Float64Array;
  /** The sum of every observation. */
  sum = 0;
  /** How many observations there were. */
  count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** Records one observation. */
  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

/** Bucket bounds for RPC latencies, in seconds: 0.5 ms to 5 s. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
];

/** Builds one scrape's text, family by family. */
export class PrometheusText {
  #text = "";

  /** A counter family: one sample, or one per label set. */
  counter(
    name: string,
    help: string,
    samples: number | readonly (readonly [Labels, number])[],
  ): this {
    return this.#family(name, "counter", help, samples);
  }

  /** A gauge family: one sample, or one per label set. */
  gauge(
    name: string,
    help: string,
    samples: number | readonly (readonly [Labels, number])[],
  ): this {
    return this.#family(name, "gauge", help, samples);
  }

  /** A histogram family: one histogram per label set. */
  histogram(
    name: string,
    help: string,
    series: readonly (readonly [Labels, Histogram])[],
  ): this {
    this.#header(name, "histogram", help);
    for (const [labels, h] of series) {
      let cumulative = 0;
      for (let i = 0; i < h.counts.length; i++) {
        cumulative += h.counts[i]!;
        const le = i < h.bounds.length ? String(h.bounds[i]) : "+Inf";
        this.#sample(`${name}_bucket`, { ...labels, le }, cumulative);
      }
      this.#sample(`${name}_sum`, labels, h.sum);
      this.#sample(`${name}_count`, labels, h.count);
    }
    return this;
  }

  /** Adds what `add` writes, for families kept together elsewhere. */
  with(add: (text: this) => void): this {
    add(this);
    return this;
  }

  /** The exposition text. */
  toString(): string {
    return this.#text;
  }

  #family(
    name: string,
    type: string,
    help: string,
    samples: number | readonly (readonly [Labels, number])[],
  ): this {
    this.#header(name, type, help);
    if (typeof samples === "number") this.#sample(name, {}, samples);
    else {for (const [labels, value] of samples) {
        this.#sample(name, labels, value);
      }}
    return this;
  }

  #header(name: string, type: string, help: string): void {
    this.#text += `# HELP ${name} ${
      help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")
    }\n`;
    this.#text += `# TYPE ${name} ${type}\n`;
  }

  #sample(name: string, labels: Labels, value: number): void {
    const pairs = Object.entries(labels);
    let line = name;
    if (pairs.length > 0) {
      line += `{${
        pairs.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")
      }}`;
    }
    this.#text += `${line} ${formatValue(value)}\n`;
  }
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(
    /\n/g,
    "\\n",
  );
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}
