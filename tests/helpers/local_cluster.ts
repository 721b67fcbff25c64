// Test helpers: registers and services in the test process, on free
// loopback ports.

import {
  type Application,
  type Register,
  type RegisterOptions,
  type Service,
  type ServiceOptions,
  startRegister,
  startService,
} from "../../mod.ts";

/** A register in this process on a free loopback port, with its address. */
export async function startLocalRegister(
  options: RegisterOptions = {},
): Promise<Register & { readonly address: string }> {
  const register = await startRegister({
    hostname: "127.0.0.1",
    port: 0,
    logLevel: "warn",
    ...options,
  });
  return Object.assign(register, { address: `127.0.0.1:${register.port}` });
}

/**
 * Options of a service in this process that joins `register`, with both
 * ports free on loopback and logs at warn; `options` adds or overrides.
 */
export function localServiceOptions(
  register: string | readonly string[],
  options: Partial<ServiceOptions> = {},
): ServiceOptions {
  return {
    register,
    hostname: "127.0.0.1",
    port: 0,
    rpcPort: 0,
    logLevel: "warn",
    ...options,
  };
}

/**
 * A service in this process with no hooks, to call the Api of the cluster
 * that `register` names; logs at error unless `options` say otherwise.
 */
export function startCaller(
  register: string | readonly string[],
  options: Partial<ServiceOptions> = {},
): Promise<Service> {
  return startService(
    {},
    localServiceOptions(register, { logLevel: "error", ...options }),
  );
}

/** Greets each client with `id:<clientId>`, as {@linkcode TestClient.connect} expects. */
export const greeter: Application = {
  onConnect(clientId, { api }) {
    return api.sendToClient(clientId, `id:${clientId}`);
  },
};
