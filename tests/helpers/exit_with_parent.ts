// Preloaded into every child process that a test starts
// (`deno run --preload`, see processes.ts). When the test process that
// started it is gone (it finished, crashed or was killed), the child is
// handed to another parent: it then stops as on SIGTERM (a register or
// service closes, the demo stops its own children), and exits for sure a
// few seconds later. The check runs on an unref'd timer, so it keeps
// nothing alive.

const CHECK_MS = 250;
const GRACE_MS = 5000;

const parent = Deno.ppid;
const check = setInterval(() => {
  if (Deno.ppid === parent) return;
  clearInterval(check);
  const exit = setTimeout(() => Deno.exit(1), GRACE_MS);
  Deno.unrefTimer(exit);
  try {
    Deno.kill(Deno.pid, "SIGTERM");
  } catch {
    Deno.exit(1);
  }
}, CHECK_MS);
Deno.unrefTimer(check);
