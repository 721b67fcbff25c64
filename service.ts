/**
 * A gateway service: accepts client WebSockets, gives each a cluster-unique
 * clientId, runs the `Application`'s hooks, joins the register,
 * and answers its peers over gRPC so that the `Api` reaches every
 * client of the cluster.
 *
 * Start one from code with {@linkcode startService}, or run this file: its
 * command line loads an application module (whose default export is the
 * `Application`) and takes every option as a flag or an environment
 * variable (`--help` lists them):
 *
 * ```sh
 * deno task service --app ./app.ts --register 127.0.0.1:8101 --port 9201
 * ```
 *
 * It exits with 0 after a clean stop on SIGINT or SIGTERM (clients are
 * closed with 1001), 2 for a bad flag or application module, and 1 when the
 * service cannot start (a port in use, say). On SIGHUP it imports the
 * application module again and reloads the service with it, every client
 * staying connected (`Service.reload`; docs/hot_reload.md).
 *
 * @module
 */

import { main } from "./internal/service/service_cli.ts";

export type { ServiceOptions } from "./internal/service/service_options.ts";
export {
  type Service,
  startService,
} from "./internal/service/start_service.ts";

if (import.meta.main) {
  // Not a top-level await: main() imports the application module, which
  // may import this library (mod.ts re-exports this file), and would wait
  // for this module to finish evaluating, forever.
  main().then((code) => Deno.exit(code));
}
