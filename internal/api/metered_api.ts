// The Api as business code and backends see it: every call counted by
// method, and every rejection too, on its way to the cluster Api. Derived
// from the method table: one wrapper per method, made once.

import type { Api } from "../../api.ts";
import {
  type AnyMethod,
  type ApiMethod,
  METHOD_NAMES,
  methodOf,
} from "./method_table.ts";

/** Where a metered Api counts, indexed by the method's place in METHOD_NAMES. */
export interface ApiCounters {
  /** Calls, by method. */
  readonly calls: Float64Array;
  /** Calls that rejected, by method. */
  readonly errors: Float64Array;
}

/**
 * An {@linkcode Api} that counts calls and errors, then delegates to `api`.
 * `onError` sees every rejection before it is passed on.
 */
export function createMeteredApi(
  api: Api,
  counters: ApiCounters,
  onError: (error: unknown) => void = () => {},
): Api {
  const { calls, errors } = counters;
  const metered = {} as Record<ApiMethod, AnyMethod>;
  METHOD_NAMES.forEach((name, i) => {
    const call = methodOf(api, name);
    const failed = (error: unknown): never => {
      errors[i]!++;
      onError(error);
      throw error;
    };
    // Returning the derived promise (not the inner one) keeps an unawaited
    // rejection unhandled, so that it is still reported.
    metered[name] = (a, b, c) => {
      calls[i]!++;
      return call(a, b, c).then(undefined, failed);
    };
  });
  return metered as unknown as Api;
}
