// The repository's layout rules (tools/check_layout.ts): no import cycles,
// internal/ in layers that import only downwards, examples and the
// benchmark on the public API, one home per Api method name, and nothing
// that names a path outside the repository.

import assert from "node:assert/strict";
import {
  checkLayout,
  importsOf,
  npmPinsOf,
  npmSpecifierProblems,
} from "../tools/check_layout.ts";

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
  await t.step("the library names npm packages pinned, as deno.json", () => {
    assert.deepEqual(report.npmSpecifiers, []);
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

Deno.test("npmSpecifierProblems() finds bare, unpinned and mispinned npm imports", async (t) => {
  const pins = npmPinsOf({
    "@bufbuild/protobuf": "npm:@bufbuild/protobuf@2.17.0",
    "@bufbuild/protobuf/": "npm:/@bufbuild/protobuf@2.17.0/",
    "@connectrpc/connect": "npm:@connectrpc/connect@2.2.0",
    "playwright-core": "npm:playwright-core@1.65.1",
  });
  await t.step("npmPinsOf() reads the pinned versions", () => {
    assert.deepEqual(Object.fromEntries(pins), {
      "@bufbuild/protobuf": "2.17.0",
      "@connectrpc/connect": "2.2.0",
      "playwright-core": "1.65.1",
    });
  });
  await t.step("what the library may import passes", () => {
    const source = [
      `import { create } from "npm:@bufbuild/protobuf@2.17.0";`,
      `import type { GenFile } from "npm:@bufbuild/protobuf@2.17.0/codegenv2";`,
      `export { Code } from "npm:@connectrpc/connect@2.2.0";`,
      `import http2 from "node:http2";`,
      `import { a } from "./a.ts";`,
      `/**`,
      ` * @example`,
      ` * import { startService } from "@wsgate/gateway";`,
      ` */`,
      `// import { x } from "@bufbuild/protobuf";`,
    ].join("\n");
    assert.deepEqual(npmSpecifierProblems("lib.ts", source, pins), []);
  });
  await t.step("each planted violation is reported", () => {
    const planted = [
      `import { create } from "@bufbuild/protobuf";`,
      `import type { Transport } from "@connectrpc/connect/protocol";`,
      `import { chromium } from "npm:playwright-core";`,
      `import { Code } from "npm:@connectrpc/connect@2.1.0";`,
      `import { left } from "npm:left-pad@1.3.0";`,
      `import { assert } from "jsr:@std/assert@1";`,
      `const late = await import("@bufbuild/protobuf/wire");`,
    ];
    const problems = npmSpecifierProblems("lib.ts", planted.join("\n"), pins);
    assert.equal(problems.length, planted.length, problems.join("\n"));
    assert.match(
      problems[0]!,
      /"@bufbuild\/protobuf" by a bare name.*write "npm:@bufbuild\/protobuf@2\.17\.0"/,
    );
    assert.match(
      problems[1]!,
      /"@connectrpc\/connect\/protocol" by a bare name/,
    );
    assert.match(problems[2]!, /deno\.json pins playwright-core at 1\.65\.1/);
    assert.match(
      problems[3]!,
      /deno\.json pins @connectrpc\/connect at 2\.2\.0/,
    );
    assert.match(problems[4]!, /left-pad is not pinned in deno\.json/);
    assert.match(
      problems[5]!,
      /only relative paths, node: modules and pinned npm:/,
    );
    assert.match(problems[6]!, /"@bufbuild\/protobuf\/wire" by a bare name/);
  });
});
