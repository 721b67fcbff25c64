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
// It is written to be copied into a service that faces the internet:
//
// - A page may be in at most MAX_ROOMS rooms, with names of at most 24
//   characters; a page that asks for more gets an error, not a room.
// - What happens in a room (joins, leaves, members, messages) goes to that
//   room only. What everyone sees, the online count and the list of rooms,
//   is not broadcast when someone connects or joins (with N pages, that is
//   N messages for each of N arrivals): each service asks the cluster every
//   `presenceIntervalMs` and tells its own pages, only when it changed.
// - A page gets a generic text for an unexpected error (which may name
//   peers' addresses); the detail goes to the service's log.
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
//                    { type: "error",   text, room? }   (room: not joined)

import {
  type Api,
  type Application,
  IncompleteResultError,
} from "../../mod.ts";
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
/** The most rooms one page may be in. */
export const MAX_ROOMS = 10;
/** The most rooms the room list shows (each costs a query of the cluster). */
export const MAX_LISTED_ROOMS = 30;
/** What a page is told when something went wrong that is not its fault. */
export const GENERIC_ERROR = "Something went wrong on our side; try again";

/** What this service remembers of each of its own clients. */
interface Person {
  readonly nick: string;
  readonly rooms: Set<string>;
}

/**
 * A user-facing problem: sent back to the page as `{ type: "error" }`, with
 * the room it could not join, if that was it.
 */
class ChatError extends Error {
  readonly room: string | undefined;
  constructor(message: string, room?: string) {
    super(message);
    this.room = room;
  }
}

/** Options of {@linkcode createChatApp}. */
export interface ChatAppOptions {
  /**
   * How often each service refreshes the online count and the room list of
   * its own pages, in milliseconds.
   *
   * @default {2000}
   */
  presenceIntervalMs?: number;
}

/** The room list: the default rooms, then others by name, with counts. */
type RoomList = { name: string; people: number }[];

/**
 * Makes the chat application of one service. Users see the service by its
 * name (`--name`, or `name` of the start options), the node id by default.
 */
export function createChatApp(options: ChatAppOptions = {}): Application {
  const { presenceIntervalMs = 2000 } = options;
  const people = new Map<string, Person>();
  /** This service's name, as onStart learns it. */
  let serviceName = "";
  /** The last online count and room list told to this service's pages. */
  let told: { online: number; rooms: RoomList } | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let refreshing: Promise<void> = Promise.resolve();

  function send(api: Api, clientId: string, event: object): Promise<void> {
    return api.sendToClient(clientId, JSON.stringify(event));
  }

  async function roomList(api: Api): Promise<RoomList> {
    const groups = await orPartial(api.getAllGroups());
    const others = groups
      .filter((g) => g.startsWith(GROUP_PREFIX))
      .map((g) => g.slice(GROUP_PREFIX.length))
      .filter((name) => !DEFAULT_ROOMS.includes(name))
      .sort();
    const names = [...DEFAULT_ROOMS, ...others].slice(0, MAX_LISTED_ROOMS);
    const counts = await Promise.all(
      names.map((name) =>
        orPartial(api.getUidCountByGroup(GROUP_PREFIX + name))
      ),
    );
    return names
      .map((name, i) => ({ name, people: counts[i]! }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The online count and room list, as last told or asked afresh. */
  async function presence(api: Api) {
    told ??= {
      online: await orPartial(api.getAllClientCount()),
      rooms: await roomList(api),
    };
    return told;
  }

  /**
   * Asks the cluster for the online count and the room list, and tells
   * this service's own pages what changed (sends to them stay on this
   * service).
   */
  async function refresh(api: Api): Promise<void> {
    if (people.size === 0) {
      told = undefined; // the next page to come asks afresh
      return;
    }
    const online = await orPartial(api.getAllClientCount());
    const rooms = await roomList(api);
    const before = told;
    told = { online, rooms };
    const events: string[] = [];
    if (before?.online !== online) {
      events.push(JSON.stringify({ type: "online", count: online }));
    }
    if (JSON.stringify(before?.rooms) !== JSON.stringify(rooms)) {
      events.push(JSON.stringify({ type: "rooms", rooms }));
    }
    for (const event of events) {
      await Promise.all(
        [...people.keys()].map((id) => api.sendToClient(id, event)),
      );
    }
  }

  function scheduleRefresh(api: Api): void {
    timer = setTimeout(() => {
      refreshing = refresh(api).catch((error) => {
        // A peer that is gone or slow: the next round tries again.
        console.warn(`chat: cannot refresh presence: ${messageOf(error)}`);
      }).finally(() => {
        if (timer !== undefined) scheduleRefresh(api);
      });
    }, presenceIntervalMs);
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
    if (!person.rooms.has(room) && person.rooms.size >= MAX_ROOMS) {
      throw new ChatError(
        `You can be in at most ${MAX_ROOMS} rooms: leave one before you join #${room}`,
        room,
      );
    }
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
        return leave(api, clientId, person, name);
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
        throw new ChatError(
          "Unknown event type: send join, leave, say or whisper",
        );
    }
  }

  return {
    onStart({ api, service }) {
      serviceName = service.name;
      scheduleRefresh(api);
    },
    async onStop() {
      clearTimeout(timer);
      timer = undefined;
      await refreshing;
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
      const { online, rooms } = await presence(api);
      await send(api, clientId, {
        type: "welcome",
        you: { clientId, nick: wanted },
        service: {
          name: serviceName,
          nodeId: service.nodeId,
        },
        online,
        rooms,
      });
    },

    async onMessage(clientId, message, { api }) {
      const person = people.get(clientId);
      if (person === undefined || typeof message !== "string") return;
      try {
        await handle(api, clientId, person, parse(message));
      } catch (error) {
        if (!(error instanceof ChatError)) {
          // The detail (which may name peers and their addresses) is for
          // the service's log, where the rethrown error goes
          // ("onMessage failed"); the page gets a generic text.
          await send(api, clientId, { type: "error", text: GENERIC_ERROR });
          throw error;
        }
        await send(api, clientId, {
          type: "error",
          text: error.message,
          ...(error.room === undefined ? {} : { room: error.room }),
        });
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
    },
  };
}

/**
 * What the services that answered said, when some did not: a count or list
 * that misses a service for a while beats none.
 */
async function orPartial<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (error) {
    if (error instanceof IncompleteResultError) return error.partial as T;
    throw error;
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
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
