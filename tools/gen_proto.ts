// Regenerates the TypeScript code in proto/gen from the .proto files, with
// buf and protoc-gen-es from npm (pinned in deno.json).
//
//   deno task gen            regenerate proto/gen
//   deno task gen --check    fail, naming the file, if proto/gen is stale

import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const generated = join(root, "proto", "gen");

/** Runs `buf generate` into `out`; buf finds the plugin's `deno` on PATH. */
async function generate(out: string): Promise<void> {
  const path = `${dirname(Deno.execPath())}:${Deno.env.get("PATH") ?? ""}`;
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "npm:@bufbuild/buf@1.75.0", "generate", "-o", out],
    cwd: root,
    env: { PATH: path },
    stdout: "inherit",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    throw new Error(
      `buf generate failed:\n${new TextDecoder().decode(stderr)}`,
    );
  }
}

/**
 * The generated code names its runtime with a pinned `npm:` specifier, as
 * the rest of the library does, so that a copy of the library (vendored, or
 * imported by URL) works without the user's `deno.json` mapping the bare name.
 */
async function pinRuntimeImports(genDir: string): Promise<void> {
  const config = JSON.parse(await Deno.readTextFile(join(root, "deno.json")));
  const target: string = config.imports["@bufbuild/protobuf"];
  for (const file of await listFiles(genDir)) {
    const path = join(genDir, file);
    const text = await Deno.readTextFile(path);
    await Deno.writeTextFile(
      path,
      text.replaceAll('from "@bufbuild/protobuf', `from "${target}`),
    );
  }
}

async function listFiles(dir: string, base = dir): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) files.push(...await listFiles(path, base));
    else files.push(relative(base, path));
  }
  return files.sort();
}

async function check(): Promise<string[]> {
  const temp = await Deno.makeTempDir({ prefix: "proto-gen-" });
  try {
    await generate(temp);
    await pinRuntimeImports(join(temp, "proto", "gen"));
    const fresh = await listFiles(join(temp, "proto", "gen"));
    const committed = await listFiles(generated).catch(() => []);
    const stale: string[] = [];
    for (const file of new Set([...fresh, ...committed])) {
      const a = await Deno.readTextFile(join(temp, "proto", "gen", file))
        .catch(() => undefined);
      const b = await Deno.readTextFile(join(generated, file)).catch(() =>
        undefined
      );
      if (a !== b) stale.push(join("proto", "gen", file));
    }
    return stale;
  } finally {
    await Deno.remove(temp, { recursive: true });
  }
}

if (import.meta.main) {
  if (Deno.args.includes("--check")) {
    const stale = await check();
    if (stale.length > 0) {
      console.error(
        `Generated code is out of date with proto/: ${
          stale.join(", ")
        }. Run \`deno task gen\` and commit the result.`,
      );
      Deno.exit(1);
    }
    console.log("proto/gen is up to date");
  } else {
    await Deno.remove(generated, { recursive: true }).catch(() => {});
    await generate(root);
    await pinRuntimeImports(generated);
    console.log(`generated ${(await listFiles(generated)).join(", ")}`);
  }
}

export { check };
