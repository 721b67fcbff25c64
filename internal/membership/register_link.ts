// The service side of membership: a Join stream to every configured
// register, re-opened with backoff when it breaks, feeding the MemberTable;
// and, to a register that asks for them (MemberList.stats_interval_ms), a
// ReportStats call on the same connection every so often while the stream
// is open, for the register's dashboard.

import { type Client, createClient } from "npm:@connectrpc/connect@2.2.0";
import { RegisterService } from "../../proto/gen/websocket/v1/register_pb.ts";
import { GatewayError } from "../../errors.ts";
import type { Member, MemberTable } from "./member_table.ts";
import { isNodeId } from "../hub/client_id.ts";
import { parseHostPort } from "../base/address.ts";
import { openRpcChannel } from "../grpc/rpc_channel.ts";
import { fromRpcError } from "../grpc/grpc_status.ts";
import { backoffDelay, type BackoffOptions, sleep } from "../base/backoff.ts";
import type { Logger } from "../base/logger.ts";
import type { CheckedTls } from "../base/options.ts";
import {
  type MemberFigures,
  type RegisterLinkState,
  toStatsMessage,
} from "./member_stats.ts";

/** The client of one register, as a link uses it. */
type RegisterClient = Client<typeof RegisterService>;

/**
 * The shortest interval between two reports to one register, whatever the
 * register asks for.
 */
const MIN_STATS_INTERVAL_MS = 100;

/** Options of {@linkcode joinRegisters}. */
export interface RegisterLinkOptions {
  /** This service, as announced to the registers. */
  readonly member: Member;
  readonly table: MemberTable;
  readonly secret?: string | undefined;
  readonly tls?: CheckedTls | undefined;
  readonly pingIntervalMs: number;
  readonly pingTimeoutMs: number;
  readonly backoff: BackoffOptions;
  readonly logger: Logger;
  /**
   * This service's figures, for the registers that ask for reports; the
   * links add the node id and their own state. Unset, no reports are sent.
   */
  readonly stats?: (() => MemberFigures) | undefined;
}

/** The Join streams of one service. */
export interface RegisterLinks {
  /**
   * Settles once: with `undefined` when the first member list arrived from
   * any register, or with an `unauthenticated` GatewayError when every
   * register refused this service's secret before any list arrived. The
   * links keep trying in both cases.
   */
  readonly joined: Promise<GatewayError | undefined>;
  /** Leaves every register and stops retrying. */
  close(): Promise<void>;
}

/** What one link reports to the others. */
interface JoinProgress {
  joined(): void;
  refused(address: string, error: GatewayError): void;
}

/** The state of one link, for the reports of every link. */
interface LinkState {
  registerId: string;
  /** `performance.now()` when the open stream got its first list. */
  connectedSince: number | undefined;
}

/** Joins every register in `addresses` and keeps the streams open. */
export function joinRegisters(
  addresses: readonly string[],
  options: RegisterLinkOptions,
): RegisterLinks {
  const unique = [...new Set(addresses)];
  const controller = new AbortController();
  let settle!: (result: GatewayError | undefined) => void;
  const joined = new Promise<GatewayError | undefined>((resolve) =>
    settle = resolve
  );
  const refusals = new Map<string, GatewayError>();
  const progress: JoinProgress = {
    joined: () => settle(undefined),
    refused(address, error) {
      refusals.set(address, error);
      if (refusals.size < unique.length) return;
      settle(
        new GatewayError(
          "unauthenticated",
          `Cannot join the cluster: every register refused this service's secret (${
            [...refusals.values()].map((e) => e.message).join("; ")
          })`,
          { cause: error },
        ),
      );
    },
  };
  const states = new Map<string, LinkState>(
    unique.map((a) => [a, { registerId: "", connectedSince: undefined }]),
  );
  const linkStates = (): RegisterLinkState[] => {
    const now = performance.now();
    return [...states].map(([address, s]) => ({
      address,
      registerId: s.registerId,
      connected: s.connectedSince !== undefined,
      connectedMs: s.connectedSince === undefined ? 0 : now - s.connectedSince,
    }));
  };
  const runs = unique.map((address) =>
    runLink(address, options, controller.signal, {
      progress,
      state: states.get(address)!,
      linkStates,
    })
  );
  return {
    joined,
    async close() {
      controller.abort();
      await Promise.all(runs);
    },
  };
}

/** What a link shares with the other links of its service. */
interface LinkShared {
  readonly progress: JoinProgress;
  /** This link's state. */
  readonly state: LinkState;
  /** The state of every link, for a report. */
  readonly linkStates: () => RegisterLinkState[];
}

async function runLink(
  address: string,
  options: RegisterLinkOptions,
  signal: AbortSignal,
  shared: LinkShared,
): Promise<void> {
  const { member, table, logger } = options;
  const { progress, state } = shared;
  const channel = openRpcChannel(address, { ...options, role: "register" });
  const client = createClient(RegisterService, channel.transport);
  let attempt = 0;
  let connected = false;
  let warned = false;
  try {
    while (!signal.aborted) {
      /** Ends this stream's reports. */
      const streamDone = new AbortController();
      /** How often the register wants reports now; 0 for none. */
      const asked = { intervalMs: 0 };
      let reports: Promise<void> | undefined;
      try {
        const stream = client.join({ member }, { signal });
        for await (const response of stream) {
          if (response.event.case !== "members") continue;
          const list = response.event.value;
          const members = validMembers(list.members, address, logger);
          table.update(address, members);
          state.registerId = list.registerId;
          state.connectedSince ??= performance.now();
          asked.intervalMs = list.statsIntervalMs;
          if (
            reports === undefined && asked.intervalMs > 0 &&
            options.stats !== undefined
          ) {
            reports = reportStats(client, address, asked, {
              member,
              figures: options.stats,
              linkStates: shared.linkStates,
              logger,
              signal: AbortSignal.any([signal, streamDone.signal]),
            });
          }
          progress.joined();
          attempt = 0;
          if (!connected) {
            connected = true;
            warned = false;
            logger.info("joined register", {
              register: address,
              members: members.length,
            });
          }
        }
        if (!signal.aborted) throw new Error("the register ended the stream");
      } catch (error) {
        if (signal.aborted) break;
        const failure = fromRpcError(error, address);
        if (failure.code === "unauthenticated") {
          if (connected || !warned) {
            logger.error(
              "register refused this service's secret; check that every register and service uses the same secret",
              { register: address, reason: failure.message },
            );
          }
          warned = true;
          progress.refused(address, failure);
        } else if (connected || !warned) {
          logger.warn("lost register; retrying", {
            register: address,
            reason: failure.message,
          });
          warned = true;
        } else {
          logger.debug("register still unreachable", {
            reason: failure.message,
          });
        }
        connected = false;
      } finally {
        state.connectedSince = undefined;
        streamDone.abort();
        await reports;
      }
      table.markDown(address);
      await sleep(backoffDelay(attempt++, options.backoff), signal);
    }
  } finally {
    channel.close();
  }
}

/** What {@linkcode reportStats} reports, and until when. */
interface ReportOptions {
  readonly member: Member;
  readonly figures: () => MemberFigures;
  readonly linkStates: () => RegisterLinkState[];
  readonly logger: Logger;
  /** Aborts when the Join stream ends or the service leaves. */
  readonly signal: AbortSignal;
}

/**
 * Sends this service's figures to the register at once, then every
 * `asked.intervalMs` (which the register's lists may change; 0 pauses),
 * until `signal` aborts. A failed report is logged at debug and the next
 * one tried: reports feed a dashboard, never membership.
 */
async function reportStats(
  client: RegisterClient,
  address: string,
  asked: { readonly intervalMs: number },
  options: ReportOptions,
): Promise<void> {
  const { member, figures, linkStates, logger, signal } = options;
  while (!signal.aborted) {
    const intervalMs = Math.max(asked.intervalMs, MIN_STATS_INTERVAL_MS);
    if (asked.intervalMs > 0) {
      try {
        const stats = toStatsMessage({
          ...figures(),
          nodeId: member.nodeId,
          registers: linkStates(),
        });
        await client.reportStats({ stats }, {
          signal,
          timeoutMs: Math.max(intervalMs, 5000),
        });
      } catch (error) {
        if (signal.aborted) break;
        logger.debug("stats report failed; trying again later", {
          register: address,
          reason: fromRpcError(error, address).message,
        });
      }
    }
    await sleep(intervalMs, signal);
  }
}

/**
 * The members of a pushed list that are well-formed; a register pushes only
 * members it checked, so anything else is logged and left out rather than
 * dialled.
 */
function validMembers(
  members: readonly Member[],
  register: string,
  logger: Logger,
): Member[] {
  const valid: Member[] = [];
  for (const m of members) {
    let ok = isNodeId(m.nodeId);
    if (ok) {
      try {
        parseHostPort(m.rpcAddress, "member address");
      } catch {
        ok = false;
      }
    }
    if (ok) valid.push({ nodeId: m.nodeId, rpcAddress: m.rpcAddress });
    else {
      logger.warn("register pushed a malformed member; ignoring it", {
        register,
        nodeId: m.nodeId,
        rpcAddress: m.rpcAddress,
      });
    }
  }
  return valid;
}
