// The service side of membership: a Join stream to every configured
// register, re-opened with backoff when it breaks, feeding the MemberTable.

import { createClient } from "@connectrpc/connect";
import { RegisterService } from "../proto/gen/websocket/v1/register_pb.ts";
import type { Member, MemberTable } from "./member_table.ts";
import { openRpcChannel } from "./rpc_channel.ts";
import { fromRpcError } from "./rpc_errors.ts";
import { backoffDelay, type BackoffOptions, sleep } from "./backoff.ts";
import type { Logger } from "./logger.ts";

/** Options of {@linkcode joinRegisters}. */
export interface RegisterLinkOptions {
  /** This service, as announced to the registers. */
  readonly member: Member;
  readonly table: MemberTable;
  readonly secret?: string | undefined;
  readonly pingIntervalMs: number;
  readonly pingTimeoutMs: number;
  readonly backoff: BackoffOptions;
  readonly logger: Logger;
}

/** The Join streams of one service. */
export interface RegisterLinks {
  /** Resolves when the first member list arrived from any register. */
  readonly joined: Promise<void>;
  /** Leaves every register and stops retrying. */
  close(): Promise<void>;
}

/** Joins every register in `addresses` and keeps the streams open. */
export function joinRegisters(
  addresses: readonly string[],
  options: RegisterLinkOptions,
): RegisterLinks {
  const controller = new AbortController();
  let markJoined!: () => void;
  const joined = new Promise<void>((resolve) => markJoined = resolve);
  const runs = addresses.map((address) =>
    runLink(address, options, controller.signal, markJoined)
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
  markJoined: () => void,
): Promise<void> {
  const { member, table, logger } = options;
  const channel = openRpcChannel(address, options);
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
          const members = response.event.value.members.map((m) => ({
            nodeId: m.nodeId,
            rpcAddress: m.rpcAddress,
          }));
          table.update(address, members);
          markJoined();
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
        const reason = fromRpcError(error, address).message;
        if (connected || !warned) {
          logger.warn("lost register; retrying", {
            register: address,
            reason,
          });
          warned = true;
        } else {
          logger.debug("register still unreachable", { reason });
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
