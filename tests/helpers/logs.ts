// Test helpers: the log lines that registers and services in the test
// process write on stderr. A test that provokes an error on purpose (a
// refused secret, a failing hook) takes the lines it expects out of the
// output and asserts on them, so that a passing run prints no ERROR line;
// every other line still reaches stderr.

/** Log lines taken out of stderr until disposed. */
export interface CapturedLogs extends Disposable {
  /** The lines taken, in order, without their newline. */
  readonly lines: readonly string[];
  /** The lines taken that match `pattern`. */
  matching(pattern: RegExp): string[];
}

/**
 * Takes the lines that match one of `expected` out of what this process
 * writes on stderr through `Deno.stderr.writeSync` (the gateway's loggers),
 * until disposed. Lines that match none are written as usual.
 */
export function captureLogs(...expected: RegExp[]): CapturedLogs {
  const stderr = Deno.stderr;
  const write = stderr.writeSync;
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  const lines: string[] = [];
  stderr.writeSync = (bytes: Uint8Array): number => {
    const text = decoder.decode(bytes);
    const passed = text.split("\n").filter((line, i, all) => {
      if (i === all.length - 1 && line === "") return true;
      if (!expected.some((pattern) => pattern.test(line))) return true;
      lines.push(line);
      return false;
    });
    if (passed.length > 1 || passed[0] !== "") {
      write.call(stderr, encoder.encode(passed.join("\n")));
    }
    return bytes.length;
  };
  return {
    lines,
    matching: (pattern) => lines.filter((line) => pattern.test(line)),
    [Symbol.dispose]() {
      stderr.writeSync = write;
    },
  };
}
