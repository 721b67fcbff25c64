// The repository's layout rules (tools/check_layout.ts): no import cycles,
// internal/ in layers that import only downwards, examples and the
// benchmark on the public API, one home per Api method name, and nothing
// that names a path outside the repository.

import assert from "node:assert/strict";
import { checkLayout, importsOf } from "../tools/check_layout.ts";

Deno.test("the layout holds", async (t) => {
  const report = await checkLayout();
  await t.step("no file is part of an import cycle", () => {
    assert.deepEqual(report.cycles, []);
  });
  await t.step("internal/ folders import only the layers below", () => {
    assert.deepEqual(report.layers, []);
  });
  await t.step("examples/ and bench/ import nothing of internal/", () => {
    assert.deepEqual(report.internalImports, []);
  });
  await t.step("three files name each Api method: type, table, cluster", () => {
    assert.deepEqual(report.methodNames, []);
  });
  await t.step("no file names a path outside the repository", () => {
    assert.deepEqual(report.outsidePaths, []);
  });
});

Deno.test("importsOf() reads code imports, not those of doc examples", () => {
  const source = [
    `import { a } from "./a.ts";`,
    `import type {`,
    `  B,`,
    `} from "../b.ts";`,
    `export { c } from "./c.ts";`,
    `import "./side_effect.ts";`,
    `import { npm } from "npm:pkg@1.0.0";`,
    `/**`,
    ` * @example`,
    ` * import { d } from "./mod.ts";`,
    ` */`,
  ].join("\n");
  assert.deepEqual(importsOf(source), [
    "./a.ts",
    "../b.ts",
    "./c.ts",
    "./side_effect.ts",
  ]);
});
