// The chat's web page, served by the services themselves through
// startService's `fetch` option. A fixed table of files, read once at start:
// nothing outside it can be asked for. /client.js is the client library,
// built from the repository's client.ts (`deno task build:client`).

const FILES: Readonly<Record<string, readonly [file: string, type: string]>> = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/index.html": ["index.html", "text/html; charset=utf-8"],
  "/chat.js": ["chat.js", "text/javascript; charset=utf-8"],
  "/client.js": ["client.js", "text/javascript; charset=utf-8"],
  "/style.css": ["style.css", "text/css; charset=utf-8"],
  "/favicon.svg": ["favicon.svg", "image/svg+xml"],
};

/** Files that are not in the public folder. */
const ELSEWHERE: Readonly<Record<string, URL>> = {
  "client.js": new URL("../../client.js", import.meta.url),
};

const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/** Loads the page's files and returns a handler that serves them. */
export async function loadPublicFiles(
  folder: URL = new URL("./public/", import.meta.url),
): Promise<(request: Request) => Response> {
  const bodies = new Map<string, Uint8Array>();
  for (const [file] of new Set(Object.values(FILES))) {
    bodies.set(
      file,
      await Deno.readFile(ELSEWHERE[file] ?? new URL(file, folder)),
    );
  }
  return function servePublicFile(request) {
    const entry = FILES[new URL(request.url).pathname];
    if (entry === undefined) {
      return new Response("Not found\n", { status: 404 });
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("Use GET\n", {
        status: 405,
        headers: { allow: "GET, HEAD" },
      });
    }
    const [file, type] = entry;
    return new Response(bodies.get(file)!.slice(), {
      headers: {
        "content-type": type,
        "cache-control": "no-cache",
        ...SECURITY_HEADERS,
      },
    });
  };
}
