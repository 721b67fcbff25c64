// The chat application: nicknames (uids), rooms (groups), private messages
// (sendToUid), join and leave notices, and the online count, all through
// the cluster Api, so people on different services talk as if on one.
// `deno task demo` runs a register and two services of it; one service is
//
//   deno run -A service.ts --app examples/chat/app.ts --name A --port 9201
//
// Its default export is the Application, and `fetch` serves the page.
//
// A nickname is the client's uid: two pages with the same nickname are the
// same person, and both get that person's private messages. A room is the
// group "room:<name>". State kept here is only about this service's own
// clients (the rooms each is in, to announce its leaving); everything else
// comes from the cluster Api.
//
// The page connects to `ws://<service>/?nick=<nickname>` and speaks JSON:
//
//   page → service   { type: "join",    room }
//                    { type: "leave",   room }
//                    { type: "say",     room, text }
//                    { type: "whisper", to, text }
//
//   service → page   { type: "welcome", you, service, online, rooms }
//                    { type: "rejected", reason }           (then closed)
//                    { type: "online",  count }
//                    { type: "rooms",   rooms: [{ name, people }] }
//                    { type: "members", room, members: [nick] }
//                    { type: "joined" | "left", room, nick, service }
//                    { type: "message", room, from, service, text, at }
//                    { type: "whisper", from, to, service, text, at }
//                    { type: "error",   text }

import type { Api, Application } from "../../mod.ts";
import { loadPublicFiles } from "./static.ts";

/** The chat, as `service.ts --app examples/chat/app.ts` runs it. */
export default createChatApp();

/** The chat's page, served on each service's WebSocket port. */
export const fetch: (request: Request) => Response = await loadPublicFiles();

/** Rooms that are always listed, even when empty. */
export const DEFAULT_ROOMS: readonly string[] = ["lobby", "random"];

const NICK = /^[\p{L}\p{N}_.-]{1,24}$/u;
const ROOM = /^[a-z0-9][a-z0-9_-]{0,23}$/;
const MAX_TEXT = 2000;
const GROUP_PREFIX = "room:";

/** What this service remembers of each of its own clients. */
interface Person {
  readonly nick: string;
  readonly rooms: Set<string>;
}

/** A user-facing problem: sent back to the page as `{ type: "error" }`. */
class ChatError extends Error {}

/**
 * Makes the chat application of one service. Users see the service by its
 * name (`--name`, or `name` of the start options), the node id by default.
 */
export function createChatApp(): Application {
  const people = new Map<string, Person>();
  /** This service's name, as onStart learns it. */
  let serviceName = "";

  function send(api: Api, clientId: string, event: object): Promise<void> {
    return api.sendToClient(clientId, JSON.stringify(event));
  }

  async function broadcastOnline(api: Api): Promise<void> {
    const count = await api.getAllClientCount();
    await api.sendToAll(JSON.stringify({ type: "online", count }));
  }

  async function roomList(api: Api) {
    const groups = await api.getAllGroups();
    const names = new Set(DEFAULT_ROOMS);
    for (const g of groups) {
      if (g.startsWith(GROUP_PREFIX)) names.add(g.slice(GROUP_PREFIX.length));
    }
    const sorted = [...names].sort();
    const counts = await Promise.all(
      sorted.map((name) => api.getUidCountByGroup(GROUP_PREFIX + name)),
    );
    return sorted.map((name, i) => ({ name, people: counts[i]! }));
  }

  async function broadcastRooms(api: Api): Promise<void> {
    const rooms = await roomList(api);
    await api.sendToAll(JSON.stringify({ type: "rooms", rooms }));
  }

  /** Sends the room's members to the room; returns them. */
  async function publishMembers(api: Api, room: string): Promise<string[]> {
    const members = (await api.getUidsByGroup(GROUP_PREFIX + room)).sort();
    await api.sendToGroup(
      GROUP_PREFIX + room,
      JSON.stringify({ type: "members", room, members }),
    );
    return members;
  }

  async function join(
    api: Api,
    clientId: string,
    person: Person,
    room: string,
  ) {
    const group = GROUP_PREFIX + room;
    const before = await api.getUidsByGroup(group);
    await api.joinGroup(clientId, group);
    person.rooms.add(room);
    if (!before.includes(person.nick)) {
      await api.sendToGroup(
        group,
        JSON.stringify({
          type: "joined",
          room,
          nick: person.nick,
          service: serviceName,
        }),
      );
    }
    await publishMembers(api, room);
    await broadcastRooms(api);
  }

  async function leave(
    api: Api,
    clientId: string,
    person: Person,
    room: string,
  ): Promise<void> {
    person.rooms.delete(room);
    await api.leaveGroup(clientId, GROUP_PREFIX + room);
    await afterLeaving(api, person, room);
    await send(api, clientId, { type: "members", room, members: [] });
  }

  /** Tells the room, unless the nick is still there from another tab. */
  async function afterLeaving(
    api: Api,
    person: Person,
    room: string,
  ): Promise<void> {
    const members = await publishMembers(api, room);
    if (!members.includes(person.nick)) {
      await api.sendToGroup(
        GROUP_PREFIX + room,
        JSON.stringify({
          type: "left",
          room,
          nick: person.nick,
          service: serviceName,
        }),
      );
    }
  }

  async function handle(
    api: Api,
    clientId: string,
    person: Person,
    event: Record<string, unknown>,
  ): Promise<void> {
    switch (event.type) {
      case "join":
        return join(api, clientId, person, room(event.room));
      case "leave": {
        const name = room(event.room);
        if (!person.rooms.has(name)) return;
        await leave(api, clientId, person, name);
        return broadcastRooms(api);
      }
      case "say": {
        const name = room(event.room);
        if (!person.rooms.has(name)) {
          throw new ChatError(`Join #${name} before you write there`);
        }
        return api.sendToGroup(
          GROUP_PREFIX + name,
          JSON.stringify({
            type: "message",
            room: name,
            from: person.nick,
            service: serviceName,
            text: text(event.text),
            at: Date.now(),
          }),
        );
      }
      case "whisper": {
        const to = nick(event.to);
        const body = text(event.text);
        if (!(await api.isUidOnline(to))) {
          throw new ChatError(`${to} is not online`);
        }
        return api.sendToUid(
          to === person.nick ? to : [to, person.nick],
          JSON.stringify({
            type: "whisper",
            from: person.nick,
            to,
            service: serviceName,
            text: body,
            at: Date.now(),
          }),
        );
      }
      default:
        throw new ChatError(`Unknown event type ${JSON.stringify(event.type)}`);
    }
  }

  return {
    onStart({ service }) {
      serviceName = service.name;
    },
    async onConnect(clientId, { api, request, service }) {
      const wanted = new URL(request.url).searchParams.get("nick")?.trim() ??
        "";
      if (!NICK.test(wanted)) {
        await api.closeClient(
          clientId,
          JSON.stringify({
            type: "rejected",
            reason:
              "A nickname is 1 to 24 letters, digits, dots, dashes or underscores",
          }),
        );
        return;
      }
      const person: Person = { nick: wanted, rooms: new Set() };
      people.set(clientId, person);
      await api.bindUid(clientId, wanted);
      await api.setInfo(clientId, { nick: wanted });
      await send(api, clientId, {
        type: "welcome",
        you: { clientId, nick: wanted },
        service: {
          name: serviceName,
          nodeId: service.nodeId,
        },
        online: await api.getAllClientCount(),
        rooms: await roomList(api),
      });
      await broadcastOnline(api);
    },

    async onMessage(clientId, message, { api }) {
      const person = people.get(clientId);
      if (person === undefined || typeof message !== "string") return;
      try {
        await handle(api, clientId, person, parse(message));
      } catch (error) {
        const text = error instanceof ChatError
          ? error.message
          : `Something went wrong: ${(error as Error).message}`;
        await send(api, clientId, { type: "error", text });
        if (!(error instanceof ChatError)) throw error;
      }
    },

    async onClose(clientId, { api }) {
      const person = people.get(clientId);
      people.delete(clientId);
      if (person === undefined) return;
      // The client has already left its groups and uid.
      for (const room of person.rooms) {
        await afterLeaving(api, person, room);
      }
      await broadcastRooms(api);
      await broadcastOnline(api);
    },
  };
}

function parse(message: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(message);
  } catch {
    throw new ChatError("Send JSON events");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ChatError("Send JSON objects");
  }
  return value as Record<string, unknown>;
}

function room(value: unknown): string {
  if (typeof value !== "string" || !ROOM.test(value)) {
    throw new ChatError(
      "A room name is 1 to 24 lowercase letters, digits, dashes or underscores",
    );
  }
  return value;
}

function nick(value: unknown): string {
  if (typeof value !== "string" || !NICK.test(value)) {
    throw new ChatError("That is not a nickname");
  }
  return value;
}

function text(value: unknown): string {
  const body = typeof value === "string" ? value.trim() : "";
  if (body.length === 0) throw new ChatError("Say something");
  if (body.length > MAX_TEXT) {
    throw new ChatError(`Keep it under ${MAX_TEXT} characters`);
  }
  return body;
}
