// The committed client.js (what a browser page imports) is client.ts as
// tools/build_client.ts builds it.

import assert from "node:assert/strict";
import { isCurrent } from "../tools/build_client.ts";

Deno.test("client.js is up to date with client.ts", async () => {
  assert.equal(
    await isCurrent(),
    true,
    "run `deno task build:client` and commit client.js",
  );
});
