// Test helpers: hosts in Linux network namespaces. A NetLab is one bridge
// in the root namespace with an address of its own, and one namespace per
// host, each joined to the bridge by a veth pair and given its own address
// in a private /24 that no interface of this machine uses. The test process
// stays in the root namespace and reaches every host on the bridge; a
// process runs inside a host with `Child.start(..., { prefix: host.exec })`.
//
// Names carry the test process's pid and a counter (`wsgate-<tag>-<i>` for
// namespaces, `wg<tag>b` for the bridge, `wg<tag>h<i>` for a host's veth
// end on the bridge), so that parallel runs do not clash, and a lab left
// behind by a run that crashed (its pid is gone) is swept at the next open.
// Needs root and iproute2 (`ip`, `tc`): `netnsSupport()` says whether this
// machine allows it; tests skip with its reason, except with `CI` set,
// where they fail instead.

const PREFIX_NS = "wsgate-";
const PREFIX_LINK = "wg";
/** Pids are written in base 36, padded to this many characters. */
const PID_CHARS = 5;

/** Whether network namespaces can be used here, and if not, why. */
export interface NetnsSupport {
  readonly available: boolean;
  /** Why not, when not available. */
  readonly reason: string;
  /**
   * Whether a test that needs namespaces should be ignored: not available
   * and `CI` unset (on CI, the test runs and fails with the reason).
   */
  readonly ignore: boolean;
}

let support: Promise<NetnsSupport> | undefined;

/**
 * Finds out once per process whether this machine allows network
 * namespaces (root, `ip` and `tc` present, a namespace can be made), and
 * prints why not when it does not.
 */
export function netnsSupport(): Promise<NetnsSupport> {
  support ??= probe().then((reason) => {
    const ci = (Deno.env.get("CI") ?? "") !== "";
    if (reason !== "") {
      console.warn(
        ci
          ? `network namespace tests FAIL on CI: ${reason}`
          : `network namespace tests skipped: ${reason} (they run as root with iproute2; with CI set they fail instead)`,
      );
    }
    return { available: reason === "", reason, ignore: reason !== "" && !ci };
  });
  return support;
}

/** Throws with the reason when namespaces are not available. */
export async function requireNetns(): Promise<void> {
  const { available, reason } = await netnsSupport();
  if (!available) {
    throw new Error(`network namespaces are needed here: ${reason}`);
  }
}

/** An empty string when namespaces work, else why not. */
async function probe(): Promise<string> {
  if (Deno.build.os !== "linux") return "not Linux";
  if (Deno.uid() !== 0) return "not running as root";
  for (const tool of ["ip", "tc"]) {
    try {
      await run([tool, "-V"]);
    } catch {
      return `\`${tool}\` is missing (Debian package iproute2)`;
    }
  }
  const name = `${PREFIX_NS}${pidTag(Deno.pid)}z-probe`;
  try {
    await run(["ip", "netns", "add", name]);
    await run(["ip", "netns", "del", name]);
  } catch (error) {
    return `cannot create a network namespace: ${
      error instanceof Error ? error.message : String(error)
    }`;
  }
  return "";
}

/** Runs a command to its end; throws with its stderr when it fails. */
export async function run(command: readonly string[]): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command(command[0]!, {
    args: command.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  if (code !== 0) {
    throw new Error(
      `${command.join(" ")} exited with ${code}: ${
        decoder.decode(stderr).trim()
      }`,
    );
  }
  return decoder.decode(stdout);
}

/** Runs a command, ignoring a failure (for cleaning up). */
async function attempt(command: readonly string[]): Promise<void> {
  try {
    await run(command);
  } catch {
    // Already gone, or never made.
  }
}

function pidTag(pid: number): string {
  return pid.toString(36).padStart(PID_CHARS, "0");
}

function isAlive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** The pid in a name made by this helper, if it is one. */
function pidOf(name: string, prefix: string): number | undefined {
  if (!name.startsWith(prefix)) return undefined;
  const text = name.slice(prefix.length, prefix.length + PID_CHARS);
  if (!/^[0-9a-z]{5}$/.test(text)) return undefined;
  return parseInt(text, 36);
}

/**
 * Removes the namespaces and links of earlier runs whose process is gone
 * (a test that crashed or was killed before it cleaned up).
 */
export async function sweepLeftovers(): Promise<string[]> {
  const swept: string[] = [];
  const namespaces = (await run(["ip", "netns", "list"])).split("\n")
    .map((line) => line.split(" ")[0]!).filter((name) => name !== "");
  for (const name of namespaces) {
    const pid = pidOf(name, PREFIX_NS);
    if (pid === undefined || isAlive(pid)) continue;
    // What ran inside exits by itself (tests/helpers/exit_with_parent.ts).
    await attempt(["ip", "netns", "del", name]);
    swept.push(name);
  }
  const links = (await run(["ip", "-o", "link", "show"])).split("\n")
    .map((line) => /^\d+: ([^:@]+)/.exec(line)?.[1])
    .filter((name): name is string => name !== undefined);
  for (const name of links) {
    const pid = pidOf(name, PREFIX_LINK);
    if (pid === undefined || isAlive(pid)) continue;
    await attempt(["ip", "link", "del", name]);
    swept.push(name);
  }
  if (swept.length > 0) {
    console.log(`netns: swept leftovers of crashed runs: ${swept.join(", ")}`);
  }
  return swept;
}

/** SIGKILLs what still runs in a namespace of ours (started by a test). */
async function killInside(namespace: string): Promise<void> {
  let pids: string;
  try {
    pids = await run(["ip", "netns", "pids", namespace]);
  } catch {
    return;
  }
  for (const pid of pids.split("\n").filter((p) => p !== "")) {
    try {
      Deno.kill(Number(pid), "SIGKILL");
    } catch {
      // Gone meanwhile.
    }
  }
}

/** A bandwidth cap (tc tbf) on the link into a host. */
export interface RateLimitOptions {
  /** The rate, in kilobits a second. */
  kbit: number;
  /**
   * The bucket: bytes that may pass at line speed.
   *
   * @default {32768}
   */
  burstBytes?: number;
  /**
   * The longest a packet may wait in the queue before it is dropped.
   *
   * @default {200}
   */
  latencyMs?: number;
}

/** One host of a {@linkcode NetLab}: a namespace with its own address. */
export class NetHost {
  /** The name the test gave it. */
  readonly label: string;
  /** The network namespace. */
  readonly namespace: string;
  /** Its address on the bridge. */
  readonly ip: string;
  /** The veth end on the bridge, in the root namespace. */
  readonly link: string;
  /** Prefix of a command run inside: `ip netns exec <namespace>`. */
  readonly exec: readonly string[];

  constructor(label: string, namespace: string, ip: string, link: string) {
    this.label = label;
    this.namespace = namespace;
    this.ip = ip;
    this.link = link;
    this.exec = ["ip", "netns", "exec", namespace];
  }

  /** Cuts the host off: its veth end on the bridge goes down. */
  async cut(): Promise<void> {
    await run(["ip", "link", "set", this.link, "down"]);
  }

  /** Restores the link that {@linkcode cut} took down. */
  async restore(): Promise<void> {
    await run(["ip", "link", "set", this.link, "up"]);
  }

  /**
   * Caps what flows into the host (the bridge side of its veth sends it)
   * with a tbf qdisc; what the host sends is not capped.
   */
  async limit(options: RateLimitOptions): Promise<void> {
    const { kbit, burstBytes = 32768, latencyMs = 200 } = options;
    await run([
      "tc",
      "qdisc",
      "replace",
      "dev",
      this.link,
      "root",
      "tbf",
      "rate",
      `${kbit}kbit`,
      "burst",
      String(burstBytes),
      "latency",
      `${latencyMs}ms`,
    ]);
  }

  /** Removes the cap of {@linkcode limit}. */
  async unlimit(): Promise<void> {
    await attempt(["tc", "qdisc", "del", "dev", this.link, "root"]);
  }
}

let labs = 0;

/**
 * A bridge and hosts in network namespaces; {@linkcode close} (or
 * `await using`) removes them all, also when the test failed.
 */
export class NetLab implements AsyncDisposable {
  /** The first three octets of the lab's /24, e.g. `"10.93.17"`. */
  readonly subnet: string;
  /** The address of the root namespace on the bridge. */
  readonly bridgeIp: string;
  readonly #tag: string;
  readonly #bridge: string;
  readonly #hosts: NetHost[] = [];
  #closed = false;

  private constructor(tag: string, subnet: string) {
    this.#tag = tag;
    this.subnet = subnet;
    this.bridgeIp = `${subnet}.1`;
    this.#bridge = `${PREFIX_LINK}${tag}b`;
  }

  /**
   * Sweeps leftovers of crashed runs, then makes the bridge in a /24 of
   * 10.0.0.0/8 that no route of this machine covers.
   */
  static async open(): Promise<NetLab> {
    await requireNetns();
    await sweepLeftovers();
    const tag = `${pidTag(Deno.pid)}${(labs++ % 36).toString(36)}`;
    const lab = new NetLab(tag, await freeSubnet());
    try {
      await run(["ip", "link", "add", lab.#bridge, "type", "bridge"]);
      await run([
        "ip",
        "addr",
        "add",
        `${lab.bridgeIp}/24`,
        "dev",
        lab.#bridge,
      ]);
      await run(["ip", "link", "set", lab.#bridge, "up"]);
    } catch (error) {
      await lab.close();
      throw error;
    }
    return lab;
  }

  /** The hosts made so far. */
  get hosts(): readonly NetHost[] {
    return this.#hosts;
  }

  /** Makes a host for each of `labels`, one after the other (`addHost`). */
  async addHosts<const L extends readonly string[]>(
    labels: L,
  ): Promise<{ -readonly [K in keyof L]: NetHost }> {
    const hosts: NetHost[] = [];
    for (const label of labels) hosts.push(await this.addHost(label));
    return hosts as { -readonly [K in keyof L]: NetHost };
  }

  /** Makes a host: a namespace on the bridge, at `<subnet>.<10 + i>`. */
  async addHost(label: string): Promise<NetHost> {
    const i = this.#hosts.length;
    if (i >= 200) throw new RangeError("Cannot add a host: 200 is the most");
    const namespace = `${PREFIX_NS}${this.#tag}-${i}`;
    const link = `${PREFIX_LINK}${this.#tag}h${i}`;
    const inner = `${PREFIX_LINK}${this.#tag}n${i}`;
    const host = new NetHost(
      label,
      namespace,
      `${this.subnet}.${10 + i}`,
      link,
    );
    this.#hosts.push(host);
    const inside = (...args: string[]) => run(["ip", "-n", namespace, ...args]);
    await run(["ip", "netns", "add", namespace]);
    await run([
      "ip",
      "link",
      "add",
      link,
      "type",
      "veth",
      "peer",
      "name",
      inner,
    ]);
    await run(["ip", "link", "set", inner, "netns", namespace]);
    await run(["ip", "link", "set", link, "master", this.#bridge]);
    await run(["ip", "link", "set", link, "up"]);
    await inside("addr", "add", `${host.ip}/24`, "dev", inner);
    await inside("link", "set", inner, "up");
    await inside("link", "set", "lo", "up");
    return host;
  }

  /**
   * Kills what still runs in the lab's namespaces, removes them, the veth
   * pairs and the bridge. Safe to call twice.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const host of this.#hosts) {
      await killInside(host.namespace);
      await attempt(["ip", "netns", "del", host.namespace]);
      await attempt(["ip", "link", "del", host.link]);
    }
    await attempt(["ip", "link", "del", this.#bridge]);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A /24 of 10.0.0.0/8 that no address or route here overlaps. */
async function freeSubnet(): Promise<string> {
  const routes = await run(["ip", "-4", "-o", "route", "show", "table", "all"]);
  const addresses = await run(["ip", "-4", "-o", "addr", "show"]);
  const used = routes + addresses;
  for (let i = 0; i < 50; i++) {
    const b = 64 + Math.floor(Math.random() * 128);
    const c = Math.floor(Math.random() * 256);
    const subnet = `10.${b}.${c}`;
    if (!used.includes(`${subnet}.`) && !covered(used, b, c)) return subnet;
  }
  throw new Error("Cannot find a free /24 in 10.0.0.0/8 for the test lab");
}

/** Whether a route or address of a wider prefix covers 10.b.c.0/24. */
function covered(text: string, b: number, c: number): boolean {
  for (const match of text.matchAll(/\b10\.(\d+)\.(\d+)\.(\d+)\/(\d+)/g)) {
    const bits = Number(match[4]);
    if (bits >= 24) continue;
    const mask = bits <= 8 ? 0 : (0xffff << (24 - bits)) & 0xffff;
    const mine = (b << 8) | c;
    const theirs = (Number(match[1]) << 8) | Number(match[2]);
    if ((mine & mask) === (theirs & mask)) return true;
  }
  return false;
}
