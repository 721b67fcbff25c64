// The bench app: the application of the benchmark's wsgate services, run
// as `deno run -A service.ts --app bench/app.ts --register ... --port ...`
// (one process, so its CPU can be sampled by PID). It speaks the bench app
// protocol of bench/load.ts:
//
//   - on connect: the first text message is `id:<clientId>`;
//   - a binary frame whose byte 0 is 'B' (0x42) goes unchanged to every
//     client of the cluster: `api.sendToAll(frame)`;
//   - a binary frame whose byte 0 is 'P' (0x50), byte 1 = L and bytes
//     2 .. 2+L the target clientId (UTF-8) goes unchanged to that client,
//     wherever it lives: `api.sendToClient(target, frame)`;
//   - a binary frame whose byte 0 is 'U' (0x55) or 'G' (0x47), byte 1 = L
//     and bytes 2 .. 2+L a uid or group name (UTF-8) goes unchanged to that
//     uid's or group's clients: `api.sendToUid` / `api.sendToGroup`;
//   - the text `count` answers `count:<n>` from `api.getAllClientCount()`;
//   - the text `bind:<uid>` binds the sender to the uid, `join:<group>`
//     adds it to the group; both answer `ok` once the call has resolved;
//   - the text `online:<uid>` answers `online:true|false` from
//     `api.isUidOnline(uid)`;
//   - anything else is ignored.

import type { Api, Application } from "../mod.ts";

const OP_BROADCAST = 0x42;
const OP_POINT_TO_POINT = 0x50;
const OP_UID = 0x55;
const OP_GROUP = 0x47;
const decoder = new TextDecoder();

/**
 * Ignores a failed send: the load generator counts what arrives, and a
 * failure (a peer gone, too much queued) shows up there as a missing
 * delivery.
 */
function ignore(): void {}

/** The bench app protocol on the cluster Api. Sends are not awaited. */
const benchApp: Application = {
  onConnect(clientId, { api }) {
    api.sendToClient(clientId, `id:${clientId}`).catch(ignore);
  },
  onMessage(clientId, message, { api }) {
    if (typeof message === "string") {
      command(clientId, message, api);
      return;
    }
    if (message.length < 2) return;
    const op = message[0];
    if (op === OP_BROADCAST) {
      api.sendToAll(message).catch(ignore);
    } else if (op === OP_POINT_TO_POINT) {
      const target = decoder.decode(message.subarray(2, 2 + message[1]!));
      api.sendToClient(target, message).catch(ignore);
    } else if (op === OP_UID || op === OP_GROUP) {
      const key = decoder.decode(message.subarray(2, 2 + message[1]!));
      const sent = op === OP_UID
        ? api.sendToUid(key, message)
        : api.sendToGroup(key, message);
      sent.catch(ignore);
    }
  },
};

function command(clientId: string, text: string, api: Api): void {
  const answer = (done: Promise<string>) =>
    done.then(
      (reply) => api.sendToClient(clientId, reply),
      (error) => api.sendToClient(clientId, `error ${error}`),
    ).catch(ignore);
  if (text === "count") {
    answer(api.getAllClientCount().then((n) => `count:${n}`));
  } else if (text.startsWith("bind:")) {
    answer(api.bindUid(clientId, text.slice(5)).then(() => "ok"));
  } else if (text.startsWith("join:")) {
    answer(api.joinGroup(clientId, text.slice(5)).then(() => "ok"));
  } else if (text.startsWith("online:")) {
    answer(api.isUidOnline(text.slice(7)).then((on) => `online:${on}`));
  }
}

export default benchApp;
