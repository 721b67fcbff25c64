/**
 * The register: the membership server of a gateway cluster. Every service
 * keeps a stream open to it and gets the member list pushed on every change.
 *
 * Run it with `deno task register [--hostname H] [--port P] [--secret S]
 * [--tls-cert F --tls-key F [--tls-ca F] [--tls-mutual]]` or start it from
 * code with {@linkcode startRegister}.
 *
 * @module
 */

import { main } from "./internal/register/register_cli.ts";

export {
  type Register,
  type RegisterOptions,
  startRegister,
} from "./internal/register/start_register.ts";

if (import.meta.main) {
  Deno.exit(await main());
}
