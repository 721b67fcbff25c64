// Checks the repository's layout rules, each a list of what breaks it:
//
// - no file is part of an import cycle;
// - internal/ is in layers: a folder imports only the folders below it
//   (LAYERS), and the public vocabulary (api.ts, application.ts, errors.ts,
//   tls.ts) imports nothing of internal/;
// - examples/ and bench/ import nothing of internal/;
// - at most three files of the library name any one Api method: the Api
//   type, the method table and the cluster implementation;
// - the library (the .ts files deno.json "publish.include" names) imports
//   npm packages only as `npm:<name>@<version>`, at the version deno.json
//   "imports" pins, and nothing by a bare name: a vendored copy or a URL
//   import has no deno.json to map bare names;
// - no file names a path outside the repository.
//
//   deno task layout           print what breaks a rule; exit 1 if anything

import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

/**
 * The folders of internal/, each with the folders it may import, bottom
 * up: the folder tree is the architecture.
 */
export const LAYERS: Readonly<Record<string, readonly string[]>> = {
  base: [],
  hub: ["base"],
  api: ["base", "hub"],
  grpc: ["base"],
  delivery: ["base", "api", "grpc"],
  membership: ["base", "hub", "grpc"],
  cluster: ["base", "hub", "api", "delivery"],
  rpc: ["base", "hub", "api", "grpc", "delivery", "cluster"],
  ops: ["base", "api", "delivery"],
  cli: ["base"],
  http: ["base"],
  websocket: ["base", "http"],
  session: ["base", "hub", "api", "delivery", "cluster"],
  dashboard: ["base", "membership"],
  register: [
    "base",
    "hub",
    "grpc",
    "membership",
    "ops",
    "cli",
    "http",
    "dashboard",
  ],
  service: [
    "base",
    "hub",
    "api",
    "grpc",
    "delivery",
    "membership",
    "cluster",
    "rpc",
    "ops",
    "cli",
    "http",
    "websocket",
    "session",
  ],
};

/** The public vocabulary: types and errors that everything may use. */
const VOCABULARY = ["api.ts", "application.ts", "errors.ts", "tls.ts"];

/** The three files that may name an Api method. */
const METHOD_HOMES = [
  "api.ts",
  "internal/api/method_table.ts",
  "internal/cluster/cluster_methods.ts",
];

/** What breaks each rule. */
export interface LayoutReport {
  cycles: string[];
  layers: string[];
  internalImports: string[];
  methodNames: string[];
  npmSpecifiers: string[];
  outsidePaths: string[];
}

async function trackedFiles(): Promise<string[]> {
  const { stdout } = await new Deno.Command("git", {
    args: ["ls-files", "--cached", "--others", "--exclude-standard"],
    cwd: root,
  }).output();
  const files = new TextDecoder().decode(stdout).split("\n").filter((f) =>
    f !== ""
  );
  const existing: string[] = [];
  for (const file of files) {
    try {
      if ((await Deno.stat(join(root, file))).isFile) existing.push(file);
    } catch {
      // Deleted in the working tree.
    }
  }
  return existing;
}

/**
 * The relative module specifiers that `source` imports or re-exports, in
 * code (not in comments or examples).
 */
export function importsOf(source: string): string[] {
  const specs: string[] = [];
  const statement =
    /^(?:import|export)\s[^;]*?\bfrom\s*["']([^"']+)["']|^import\s*["']([^"']+)["']/gms;
  for (const match of source.matchAll(statement)) {
    specs.push((match[1] ?? match[2])!);
  }
  return specs.filter((s) => s.startsWith("."));
}

/**
 * Every module specifier that `source` imports or re-exports in code,
 * relative or not, static or a literal `import("...")`; comment lines (and
 * so doc examples) are skipped.
 */
export function specifiersOf(source: string): string[] {
  const code = source.split("\n").filter((line) => !/^\s*(\*|\/\/)/.test(line))
    .join("\n");
  const specs: string[] = [];
  const statement =
    /^(?:import|export)\s[^;]*?\bfrom\s*["']([^"']+)["']|^import\s*["']([^"']+)["']/gms;
  for (const match of code.matchAll(statement)) {
    specs.push((match[1] ?? match[2])!);
  }
  for (const match of code.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)) {
    specs.push(match[1]!);
  }
  return specs;
}

/**
 * The npm versions that deno.json `imports` pins, by package name, from
 * its entries of the form `npm:<name>@<version>`.
 */
export function npmPinsOf(
  imports: Readonly<Record<string, string>>,
): Map<string, string> {
  const pins = new Map<string, string>();
  for (const target of Object.values(imports)) {
    const match = /^npm:((?:@[^/@]+\/)?[^/@]+)@([^/]+)$/.exec(target);
    if (match !== null) pins.set(match[1]!, match[2]!);
  }
  return pins;
}

/**
 * What the imports of the library file `file` break of the npm rule: a
 * package must be named `npm:<name>@<version>[/<path>]` with the version of
 * `pins`; besides, only relative paths and `node:` modules.
 */
export function npmSpecifierProblems(
  file: string,
  source: string,
  pins: ReadonlyMap<string, string>,
): string[] {
  const problems: string[] = [];
  for (const spec of specifiersOf(source)) {
    if (spec.startsWith(".") || spec.startsWith("node:")) continue;
    const pinned = (name: string) => `"npm:${name}@${pins.get(name)}"`;
    if (!/^[a-z][a-z0-9+.-]*:/i.test(spec)) {
      const name = /^(?:@[^/]+\/)?[^/]+/.exec(spec)?.[0] ?? spec;
      problems.push(
        `${file} imports "${spec}" by a bare name: a copy without deno.json cannot resolve it; write ${
          pins.has(name) ? pinned(name) : '"npm:<name>@<version>"'
        }`,
      );
      continue;
    }
    const npm = /^npm:\/?((?:@[^/@]+\/)?[^/@]+)(?:@([^/]+))?/.exec(spec);
    if (npm === null) {
      problems.push(
        `${file} imports "${spec}": the library imports only relative paths, node: modules and pinned npm: packages`,
      );
      continue;
    }
    const [, name, version] = npm as unknown as [string, string, string?];
    const pin = pins.get(name);
    if (pin === undefined) {
      problems.push(
        `${file} imports "${spec}": ${name} is not pinned in deno.json "imports"; add it there`,
      );
    } else if (version !== pin) {
      problems.push(
        `${file} imports "${spec}": deno.json pins ${name} at ${pin}; write ${
          pinned(name)
        }`,
      );
    }
  }
  return problems;
}

/** The .ts files of `files` that `include` (deno.json publish) names. */
function libraryFiles(
  files: readonly string[],
  include: readonly string[],
): string[] {
  return files.filter((file) =>
    file.endsWith(".ts") &&
    include.some((entry) =>
      entry.endsWith("/") ? file.startsWith(entry) : file === entry
    )
  );
}

/** Files that are part of an import cycle, one line per cycle. */
function findCycles(graph: Map<string, string[]>): string[] {
  let index = 0;
  const indexOf = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[] = [];
  const visit = (file: string) => {
    indexOf.set(file, index);
    low.set(file, index++);
    stack.push(file);
    onStack.add(file);
    for (const next of graph.get(file) ?? []) {
      if (!graph.has(next)) continue;
      if (!indexOf.has(next)) {
        visit(next);
        low.set(file, Math.min(low.get(file)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(file, Math.min(low.get(file)!, indexOf.get(next)!));
      }
    }
    if (low.get(file) === indexOf.get(file)) {
      const members: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        members.push(member);
      } while (member !== file);
      const selfLoop = graph.get(file)?.includes(file) ?? false;
      if (members.length > 1 || selfLoop) {
        cycles.push(members.sort().join(" <-> "));
      }
    }
  };
  for (const file of graph.keys()) if (!indexOf.has(file)) visit(file);
  return cycles;
}

/** The internal/ folder of a repository path, if it is in one. */
function layerOf(file: string): string | undefined {
  const match = /^internal\/([^/]+)\//.exec(file);
  return match?.[1];
}

/** Checks every rule; an empty report means the layout holds. */
export async function checkLayout(): Promise<LayoutReport> {
  const files = await trackedFiles();
  const sources = files.filter((f) =>
    /\.(ts|mts|js|mjs)$/.test(f) && !f.startsWith("proto/gen/")
  );
  const texts = new Map<string, string>();
  for (const file of sources) {
    texts.set(file, await Deno.readTextFile(join(root, file)));
  }
  const graph = new Map<string, string[]>();
  const report: LayoutReport = {
    cycles: [],
    layers: [],
    internalImports: [],
    methodNames: [],
    npmSpecifiers: [],
    outsidePaths: [],
  };
  for (const [file, text] of texts) {
    const targets = importsOf(text).map((spec) =>
      relative(root, resolve(root, dirname(file), spec))
    );
    graph.set(file, targets);
    const layer = layerOf(file);
    for (const target of targets) {
      const targetLayer = layerOf(target);
      if (layer !== undefined) {
        const allowed = LAYERS[layer];
        if (allowed === undefined) {
          report.layers.push(`${file}: internal/${layer}/ is not in LAYERS`);
        } else if (
          targetLayer !== undefined && targetLayer !== layer &&
          !allowed.includes(targetLayer)
        ) {
          report.layers.push(
            `${file} imports ${target}: internal/${layer}/ may import only ${
              allowed.join(", ") || "nothing of internal/"
            }`,
          );
        } else if (
          targetLayer === undefined && !target.startsWith("internal/") &&
          !VOCABULARY.includes(target) && !target.startsWith("proto/gen/")
        ) {
          report.layers.push(
            `${file} imports ${target}: internal/ may import only the public vocabulary (${
              VOCABULARY.join(", ")
            }) and proto/gen/ from outside it`,
          );
        }
      } else if (VOCABULARY.includes(file) && !VOCABULARY.includes(target)) {
        report.layers.push(
          `${file} imports ${target}: the public vocabulary imports only itself`,
        );
      }
      if (
        (file.startsWith("examples/") || file.startsWith("bench/")) &&
        target.startsWith("internal/")
      ) {
        report.internalImports.push(`${file} imports ${target}`);
      }
    }
  }
  report.cycles = findCycles(graph);

  const api = texts.get("api.ts") ?? "";
  const methods = [
    ...api.slice(api.indexOf("export interface Api {")).matchAll(
      /^ {2}(\w+)\(/gm,
    ),
  ].map((m) => m[1]!);
  const library = [...texts.keys()].filter((f) =>
    f.endsWith(".ts") &&
    !/^(tests|examples|bench|tools)\//.test(f)
  );
  for (const method of new Set(methods)) {
    const word = new RegExp(`\\b${method}\\b`);
    const naming = library.filter((f) => word.test(texts.get(f)!));
    const extra = naming.filter((f) => !METHOD_HOMES.includes(f));
    if (extra.length > 0) {
      report.methodNames.push(
        `${method} is named in ${extra.join(", ")} (only ${
          METHOD_HOMES.join(", ")
        } may name it)`,
      );
    }
  }

  const config = JSON.parse(await Deno.readTextFile(join(root, "deno.json")));
  const pins = npmPinsOf(config.imports ?? {});
  for (const file of libraryFiles(files, config.publish?.include ?? [])) {
    const text = texts.get(file) ?? await Deno.readTextFile(join(root, file));
    report.npmSpecifiers.push(...npmSpecifierProblems(file, text, pins));
  }

  const outside = /\.\.\/shared\b|\/work\/|\/root\/|\/home\/[a-z]/;
  for (const file of files) {
    if (/\.(lock|png|ico|svg)$|^proto\/gen\//.test(file)) continue;
    if (file.endsWith("package-lock.json")) continue;
    let text: string;
    try {
      text = texts.get(file) ?? await Deno.readTextFile(join(root, file));
    } catch {
      continue;
    }
    text.split("\n").forEach((line, i) => {
      if (outside.test(line) && file !== "tools/check_layout.ts") {
        report.outsidePaths.push(`${file}:${i + 1}: ${line.trim()}`);
      }
    });
  }
  return report;
}

if (import.meta.main) {
  const report = await checkLayout();
  let broken = 0;
  for (const [rule, problems] of Object.entries(report)) {
    for (const problem of problems as string[]) {
      console.error(`${rule}: ${problem}`);
      broken++;
    }
  }
  if (broken > 0) Deno.exit(1);
  console.log(
    "layout holds: no cycles, layers downwards, one home per Api method, pinned npm: imports",
  );
}
