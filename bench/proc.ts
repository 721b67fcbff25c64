// CPU time and memory of processes and of the whole machine, from Linux's
// /proc. Used by the load generator (per phase) and by the drivers (to wait
// for a quiet machine). Reading /proc in Deno 2 needs --allow-all.

/**
 * Clock ticks per second of the /proc counters (USER_HZ). Linux fixes it
 * at 100 for user space on every architecture it runs on.
 */
export const TICKS_PER_SECOND = 100;

/** User + system CPU ticks of a process (all its threads), or NaN. */
export function processTicks(pid: number | "self"): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The command name may hold spaces and parentheses: fields start after
    // the last ")". utime and stime are fields 14 and 15 of the line.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return NaN;
  }
}

/** Busy and total CPU ticks of the machine, summed over every CPU. */
export interface MachineTicks {
  busy: number;
  total: number;
}

/**
 * Machine CPU ticks from the first line of /proc/stat. Busy is user, nice,
 * system, irq, softirq and steal; idle and iowait are not busy.
 */
export function machineTicks(): MachineTicks {
  try {
    const first = Deno.readTextFileSync("/proc/stat").split("\n", 1)[0]!;
    const [
      user = 0,
      nice = 0,
      system = 0,
      idle = 0,
      iowait = 0,
      irq = 0,
      softirq = 0,
      steal = 0,
    ] = first
      .trim().split(/\s+/).slice(1).map(Number);
    const busy = user + nice + system + irq + softirq + steal;
    return { busy, total: busy + idle + iowait };
  } catch {
    return { busy: NaN, total: NaN };
  }
}

/** Resident memory of a process in KiB, or NaN. */
export function residentKib(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

/** How busy the machine is over `ms`, in % of all its CPUs. */
export async function machineBusyPct(ms = 1000): Promise<number> {
  const a = machineTicks();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const b = machineTicks();
  const total = b.total - a.total;
  return total > 0 ? Math.round(100 * (b.busy - a.busy) / total) : 0;
}
