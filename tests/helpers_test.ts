// The test helpers themselves: processes that a test starts do not outlive
// it, however it ends.

import assert from "node:assert/strict";
import { Child } from "./helpers/processes.ts";
import { eventually } from "./helpers/waits.ts";

function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT"); // harmless; throws when there is no such process
    return true;
  } catch {
    return false;
  }
}

Deno.test("children of a test process that is killed stop by themselves", async () => {
  const parent = await Child.start("tests/fixtures/dying_parent.ts", []);
  const pids = JSON.parse(parent.first) as number[];
  assert.equal(pids.length, 2);
  const status = await parent.status;
  assert.equal(status.signal, "SIGKILL");
  assert.ok(
    pids.some(alive),
    "a child outlived its parent's death for a moment",
  );
  await eventually(
    "the register and the service are gone",
    () => !pids.some(alive),
    15_000,
  );
  await parent.stop();
});
