// The Api as business code and backends see it: every call counted by
// method, and every rejection too, on its way to the cluster Api.

import type { Api, ClientInfo, Message, SendOptions } from "../../api.ts";
import { API, API_METHODS, type ServiceMetrics } from "../ops/metrics.ts";

/** An {@linkcode Api} that counts calls and errors, then delegates. */
export class MeteredApi implements Api {
  readonly #api: Api;
  readonly #calls: Float64Array;
  /** Per method: counts the error and rethrows it, made once. */
  readonly #failed: ((error: unknown) => never)[];

  constructor(api: Api, metrics: ServiceMetrics) {
    this.#api = api;
    this.#calls = metrics.apiCalls;
    const errors = metrics.apiErrors;
    this.#failed = API_METHODS.map((_, i) => (error: unknown): never => {
      errors[i]!++;
      throw error;
    });
  }

  /**
   * Counts a call and returns a promise that settles as `result` does.
   * Returning the derived promise (not `result`) keeps an unawaited
   * rejection unhandled, so it is still reported.
   */
  #track<T>(method: number, result: Promise<T>): Promise<T> {
    this.#calls[method]!++;
    return result.then(undefined, this.#failed[method]);
  }

  sendToAll(message: Message, options?: SendOptions): Promise<void> {
    return this.#track(API.sendToAll, this.#api.sendToAll(message, options));
  }
  sendToClient(clientId: string, message: Message): Promise<void> {
    return this.#track(
      API.sendToClient,
      this.#api.sendToClient(clientId, message),
    );
  }
  sendToUid(uid: string | readonly string[], message: Message): Promise<void> {
    return this.#track(API.sendToUid, this.#api.sendToUid(uid, message));
  }
  sendToGroup(
    group: string | readonly string[],
    message: Message,
    options?: SendOptions,
  ): Promise<void> {
    return this.#track(
      API.sendToGroup,
      this.#api.sendToGroup(group, message, options),
    );
  }
  bindUid(clientId: string, uid: string): Promise<void> {
    return this.#track(API.bindUid, this.#api.bindUid(clientId, uid));
  }
  unbindUid(clientId: string): Promise<void> {
    return this.#track(API.unbindUid, this.#api.unbindUid(clientId));
  }
  isUidOnline(uid: string): Promise<boolean> {
    return this.#track(API.isUidOnline, this.#api.isUidOnline(uid));
  }
  getUidByClientId(clientId: string): Promise<string | undefined> {
    return this.#track(
      API.getUidByClientId,
      this.#api.getUidByClientId(clientId),
    );
  }
  getClientIdsByUid(uid: string): Promise<string[]> {
    return this.#track(API.getClientIdsByUid, this.#api.getClientIdsByUid(uid));
  }
  joinGroup(clientId: string, group: string): Promise<void> {
    return this.#track(API.joinGroup, this.#api.joinGroup(clientId, group));
  }
  leaveGroup(clientId: string, group: string): Promise<void> {
    return this.#track(API.leaveGroup, this.#api.leaveGroup(clientId, group));
  }
  ungroup(group: string): Promise<void> {
    return this.#track(API.ungroup, this.#api.ungroup(group));
  }
  getClientCountByGroup(group: string): Promise<number> {
    return this.#track(
      API.getClientCountByGroup,
      this.#api.getClientCountByGroup(group),
    );
  }
  getClientIdsByGroup(group: string): Promise<string[]> {
    return this.#track(
      API.getClientIdsByGroup,
      this.#api.getClientIdsByGroup(group),
    );
  }
  getUidsByGroup(group: string): Promise<string[]> {
    return this.#track(API.getUidsByGroup, this.#api.getUidsByGroup(group));
  }
  getUidCountByGroup(group: string): Promise<number> {
    return this.#track(
      API.getUidCountByGroup,
      this.#api.getUidCountByGroup(group),
    );
  }
  getAllUid(): Promise<string[]> {
    return this.#track(API.getAllUid, this.#api.getAllUid());
  }
  getAllUidCount(): Promise<number> {
    return this.#track(API.getAllUidCount, this.#api.getAllUidCount());
  }
  getAllGroups(): Promise<string[]> {
    return this.#track(API.getAllGroups, this.#api.getAllGroups());
  }
  getAllClientIds(): Promise<string[]> {
    return this.#track(API.getAllClientIds, this.#api.getAllClientIds());
  }
  getAllClientCount(): Promise<number> {
    return this.#track(API.getAllClientCount, this.#api.getAllClientCount());
  }
  isOnline(clientId: string): Promise<boolean> {
    return this.#track(API.isOnline, this.#api.isOnline(clientId));
  }
  closeClient(clientId: string, message?: Message): Promise<void> {
    return this.#track(
      API.closeClient,
      this.#api.closeClient(clientId, message),
    );
  }
  getInfo(clientId: string): Promise<ClientInfo | undefined> {
    return this.#track(API.getInfo, this.#api.getInfo(clientId));
  }
  setInfo(clientId: string, info: ClientInfo): Promise<void> {
    return this.#track(API.setInfo, this.#api.setInfo(clientId, info));
  }
  updateInfo(clientId: string, info: ClientInfo): Promise<void> {
    return this.#track(API.updateInfo, this.#api.updateInfo(clientId, info));
  }
  getClientInfosByGroup(group: string): Promise<Record<string, ClientInfo>> {
    return this.#track(
      API.getClientInfosByGroup,
      this.#api.getClientInfosByGroup(group),
    );
  }
  getAllClientInfos(): Promise<Record<string, ClientInfo>> {
    return this.#track(API.getAllClientInfos, this.#api.getAllClientInfos());
  }
}
