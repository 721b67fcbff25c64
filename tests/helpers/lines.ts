// Splitting a child process's text output into lines.

/**
 * A stream that cuts text into lines, without their `"\n"`; a last line
 * without one comes out when the input ends.
 */
export function splitLines(): TransformStream<string, string> {
  let buffer = "";
  return new TransformStream({
    transform(chunk, controller) {
      buffer += chunk;
      let i;
      while ((i = buffer.indexOf("\n")) >= 0) {
        controller.enqueue(buffer.slice(0, i));
        buffer = buffer.slice(i + 1);
      }
    },
    flush(controller) {
      if (buffer.length > 0) controller.enqueue(buffer);
    },
  });
}
