// The committed generated code matches the .proto files.

import assert from "node:assert/strict";
import { check } from "../tools/gen_proto.ts";

Deno.test("proto/gen is up to date with proto/*.proto", async () => {
  assert.deepEqual(
    await check(),
    [],
    "run `deno task gen` and commit the result",
  );
});
