// Builds client.js, the JavaScript a browser page imports without a build
// step of its own, from client.ts with `deno bundle` (esbuild, as this
// Deno ships it), then formatted with `deno fmt`. client.ts has no imports,
// so the bundle is the same code with its types stripped.
//
//   deno task build:client           rewrite client.js
//   deno task build:client --check   fail if client.js is out of date

import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const source = join(root, "client.ts");
const committed = join(root, "client.js");

const HEADER = "// Generated from client.ts by tools/build_client.ts " +
  "(deno task build:client); do not edit.\n" +
  "// deno-lint-ignore-file\n";

/** Bundles client.ts and returns the JavaScript, header included. */
export async function build(): Promise<string> {
  const temp = await Deno.makeTempDir({ prefix: "client-js-" });
  try {
    const out = join(temp, "client.js");
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "bundle",
        "--quiet",
        "--platform",
        "browser",
        "--format",
        "esm",
        "--output",
        out,
        source,
      ],
      cwd: root,
      stdout: "inherit",
      stderr: "piped",
    }).output();
    if (code !== 0) {
      throw new Error(
        `deno bundle client.ts failed:\n${new TextDecoder().decode(stderr)}`,
      );
    }
    return await format(HEADER + await Deno.readTextFile(out));
  } finally {
    await Deno.remove(temp, { recursive: true });
  }
}

/** `text` as `deno fmt` formats JavaScript. */
async function format(text: string): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--ext", "js", "-"],
    cwd: root,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  if (code !== 0) {
    throw new Error(
      `deno fmt of the bundle failed:\n${new TextDecoder().decode(stderr)}`,
    );
  }
  return new TextDecoder().decode(stdout);
}

/** Whether the committed client.js is what `build()` makes. */
export async function isCurrent(): Promise<boolean> {
  const [fresh, current] = await Promise.all([
    build(),
    Deno.readTextFile(committed).catch(() => undefined),
  ]);
  return fresh === current;
}

if (import.meta.main) {
  if (Deno.args.includes("--check")) {
    if (!(await isCurrent())) {
      console.error(
        "client.js is out of date with client.ts. Run `deno task build:client` and commit the result.",
      );
      Deno.exit(1);
    }
    console.log("client.js is up to date");
  } else {
    await Deno.writeTextFile(committed, await build());
    console.log("wrote client.js");
  }
}
