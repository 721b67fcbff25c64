/**
 * wsgate: a distributed WebSocket gateway for Deno.
 *
 * Business code talks to WebSocket clients spread over many service
 * processes as if they were one. A small **register** keeps the member list;
 * every **service** accepts client WebSockets, gives each client a
 * cluster-unique clientId, calls the {@linkcode Application}'s hooks, and
 * reaches the other services over gRPC to carry out the cluster-wide
 * {@linkcode Api}.
 *
 * Besides WebSockets, a service's port answers `GET /healthz` (200 once it
 * has joined the cluster) and `GET /metrics` (Prometheus text); plain HTTP
 * requests go to {@linkcode ServiceOptions.fetch}, and backends that do not
 * speak gRPC can call the Api over HTTP+JSON when
 * {@linkcode ServiceOptions.httpApiSecret} is set. A register serves the
 * same two endpoints on {@linkcode RegisterOptions.httpPort}.
 *
 * @example A register and a service, ready for clients
 * ```ts
 * import assert from "node:assert/strict";
 * import { startRegister, startService } from "./mod.ts";
 *
 * await using register = await startRegister({ hostname: "127.0.0.1", port: 0 });
 * await using service = await startService({
 *   onConnect(clientId, { service }) {
 *     console.log(`${clientId} connected to ${service.name}`);
 *   },
 * }, {
 *   register: `127.0.0.1:${register.port}`,
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   rpcPort: 0,
 * });
 * const health = await fetch(`http://127.0.0.1:${service.port}/healthz`);
 * assert.equal((await health.json()).status, "ready");
 * ```
 *
 * The {@linkcode Api} documents what business code does with the clients.
 *
 * @module
 */

export type { Api, ClientInfo, Message, SendOptions } from "./api.ts";
export type {
  Application,
  ConnectContext,
  Context,
  HandshakeAccept,
  HandshakeContext,
  HandshakeResult,
  RateLimit,
  ServiceIdentity,
} from "./application.ts";
export {
  GatewayError,
  type GatewayErrorCode,
  type GatewayErrorOptions,
  IncompleteResultError,
  type PeerFailure,
} from "./errors.ts";
export {
  type Register,
  type RegisterOptions,
  startRegister,
} from "./register.ts";
export { type Service, type ServiceOptions, startService } from "./service.ts";
export type { TlsOptions } from "./tls.ts";
export type { LogLevel } from "./internal/base/logger.ts";
