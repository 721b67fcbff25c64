// The memory a service process holds, rather than the garbage it has not
// collected yet: V8 collects large buffers lazily (after tens of MiB), so
// RSS alone says little about what a service keeps.

import { TestClient } from "./clients.ts";
import { rssOf } from "./processes.ts";

/**
 * The RSS of the lab service process `pid` on `port`, right after a full
 * garbage collection: the lab's "!mem" collects when the process runs with
 * `--v8-flags=--expose-gc` (see {@linkcode GC_FLAGS}).
 */
export async function rssAfterGc(port: number, pid: number): Promise<number> {
  await using client = await TestClient.connect(port);
  client.socket.send("!mem");
  await client.next(); // Deno.memoryUsage(), after the collection
  return await rssOf(pid);
}

/** Flags for a lab service process whose "!mem" collects garbage first. */
export const GC_FLAGS: string[] = ["--v8-flags=--expose-gc"];
