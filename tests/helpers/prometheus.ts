// Test helper: a strict parser of the Prometheus text format (0.0.4), so
// that tests read /metrics as a scraper would.

/** One sample line. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A parsed scrape. */
export class Scrape {
  readonly samples: readonly Sample[];
  /** Family name to type (`counter`, `gauge`, `histogram`). */
  readonly types: ReadonlyMap<string, string>;

  constructor(samples: Sample[], types: Map<string, string>) {
    this.samples = samples;
    this.types = types;
  }

  /** The value of the one sample with this name and these labels. */
  value(name: string, labels: Record<string, string> = {}): number {
    const found = this.samples.filter((s) =>
      s.name === name &&
      Object.keys(labels).every((k) => s.labels[k] === labels[k])
    );
    if (found.length !== 1) {
      throw new Error(
        `expected one sample ${name} ${
          JSON.stringify(labels)
        }, found ${found.length}`,
      );
    }
    return found[0]!.value;
  }

  /** The buckets of a histogram series, as [le, cumulative count]. */
  buckets(
    name: string,
    labels: Record<string, string> = {},
  ): [string, number][] {
    return this.samples
      .filter((s) =>
        s.name === `${name}_bucket` &&
        Object.keys(labels).every((k) => s.labels[k] === labels[k])
      )
      .map((s) => [s.labels.le!, s.value]);
  }
}

const SAMPLE =
  /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/y;

/** Parses exposition text; throws on any malformed line. */
export function parsePrometheus(text: string): Scrape {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const helped = new Set<string>();
  if (!text.endsWith("\n")) throw new Error("the text must end with \\n");
  for (const line of text.slice(0, -1).split("\n")) {
    if (line.startsWith("# HELP ")) {
      helped.add(line.split(" ")[2]!);
      continue;
    }
    if (line.startsWith("# TYPE ")) {
      const [, , name, type] = line.split(" ");
      if (!["counter", "gauge", "histogram"].includes(type!)) {
        throw new Error(`bad type line: ${line}`);
      }
      types.set(name!, type!);
      continue;
    }
    const match = SAMPLE.exec(line);
    if (match === null) throw new Error(`bad sample line: ${line}`);
    const [, name, rawLabels = "", rawValue] = match;
    const labels: Record<string, string> = {};
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < rawLabels.length) {
      const m = LABEL.exec(rawLabels);
      if (m === null) throw new Error(`bad labels: ${line}`);
      labels[m[1]!] = m[2]!.replace(/\\n/g, "\n").replace(/\\(.)/g, "$1");
    }
    const family = types.has(name!)
      ? name!
      : name!.replace(/_(bucket|sum|count)$/, "");
    if (!types.has(family) || !helped.has(family)) {
      throw new Error(`sample before its # HELP and # TYPE: ${line}`);
    }
    const value = rawValue === "+Inf"
      ? Infinity
      : rawValue === "-Inf"
      ? -Infinity
      : Number(rawValue);
    samples.push({ name: name!, labels, value });
  }
  return new Scrape(samples, types);
}

/** Fetches and parses `url`, checking the status and content type. */
export async function scrape(url: string): Promise<Scrape> {
  const response = await fetch(url);
  if (response.status !== 200) {
    await response.body?.cancel();
    throw new Error(`GET ${url} answered ${response.status}`);
  }
  const type = response.headers.get("content-type") ?? "";
  if (!type.startsWith("text/plain; version=0.0.4")) {
    await response.body?.cancel();
    throw new Error(`GET ${url} has content type ${type}`);
  }
  return parsePrometheus(await response.text());
}
