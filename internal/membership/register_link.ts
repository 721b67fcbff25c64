// The service side of membership: a Join stream to every configured
// register, re-opened with backoff when it breaks, feeding the MemberTable.

import { createClient } from "npm:@connectrpc/connect@2.2.0";
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
  const runs = unique.map((address) =>
    runLink(address, options, controller.signal, progress)
  );
  return {
    joined,
    async close() {
      controller.abort();
      await Promise.all(runs);
    },
  };
}

async function runLink(
  address: string,
  options: RegisterLinkOptions,
  signal: AbortSignal,
  progress: JoinProgress,
): Promise<void> {
  const { member, table, logger } = options;
  const channel = openRpcChannel(address, { ...options, role: "register" });
  const client = createClient(RegisterService, channel.transport);
  let attempt = 0;
  let connected = false;
  let warned = false;
  try {
    while (!signal.aborted) {
      try {
        const stream = client.join({ member }, { signal });
        for await (const response of stream) {
          if (response.event.case !== "members") continue;
          const members = validMembers(
            response.event.value.members,
            address,
            logger,
          );
          table.update(address, members);
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
      }
      table.markDown(address);
      await sleep(backoffDelay(attempt++, options.backoff), signal);
    }
  } finally {
    channel.close();
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
