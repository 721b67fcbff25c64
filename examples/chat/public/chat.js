// The chat page: plain JavaScript, no build step. It talks JSON (see
// ../app.ts for the events) to the service that served it, through the
// client library (/client.js, built from ../../../client.ts), which
// reconnects by itself, resumes the session and replays what the page
// missed. Other services of the cluster to fall back on go in the page's
// address: `?services=host:port,host:port`.

import { connect } from "/client.js";

const $ = (selector) => document.querySelector(selector);

const NICK = /^[\p{L}\p{N}_.-]{1,24}$/u;
const ROOM = /^[a-z0-9][a-z0-9_-]{0,23}$/;

const state = {
  nick: "",
  /** The client library's connection (see /client.js). */
  client: undefined,
  connected: false,
  everConnected: false,
  service: undefined,
  online: 0,
  rooms: [],
  joined: new Set(["lobby"]),
  members: new Map(),
  /** View key ("#room" or "@nick") → { items: [], unread: 0 } */
  views: new Map(),
  current: "#lobby",
};

// ------------------------------------------------------------ helpers

function hash(text) {
  let h = 0;
  for (const c of text) h = (h * 31 + c.codePointAt(0)) % 1000003;
  return h;
}

function hue(text) {
  return hash(text) % 360;
}

/** Distinct, readable hues for services: "A" is indigo, "B" teal. */
const SERVICE_HUES = [330, 235, 170, 25, 200, 280, 140, 5];

function serviceHue(name) {
  return SERVICE_HUES[hash(name) % SERVICE_HUES.length];
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "style") {
      for (const [k, v] of Object.entries(value)) node.style.setProperty(k, v);
    } else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function avatar(nick, small = false) {
  return el("span", {
    class: small ? "avatar small" : "avatar",
    style: { "--hue": String(hue(nick)) },
  }, [...nick][0] ?? "?");
}

function via(service) {
  return el("span", {
    class: "via",
    style: { "--svc-hue": String(serviceHue(service)) },
    title: `Sent through service ${service}`,
  }, `via ${service}`);
}

function clock(at) {
  return el(
    "time",
    { datetime: new Date(at).toISOString() },
    new Date(at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
  );
}

function view(key) {
  let v = state.views.get(key);
  if (v === undefined) {
    v = { items: [], unread: 0 };
    state.views.set(key, v);
  }
  return v;
}

function isRoom(key) {
  return key.startsWith("#");
}

// ------------------------------------------------------------ log items

function add(key, item) {
  const v = view(key);
  v.items.push(item);
  if (v.items.length > 500) v.items.shift();
  if (key === state.current) {
    const log = $("#log");
    const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 60;
    log.querySelector(".empty")?.remove();
    log.append(render(item));
    if (stick || item.mine) log.scrollTop = log.scrollHeight;
  } else if (item.kind === "message") {
    v.unread++;
    renderSidebar();
  }
}

/** The log item of a message or whisper event. */
function messageItem(event, whisper = false) {
  return {
    kind: "message",
    from: event.from,
    service: event.service,
    text: event.text,
    at: event.at,
    mine: event.from === state.nick,
    whisper,
  };
}

function render(item) {
  if (item.kind === "notice") {
    return el(
      "li",
      { class: item.error ? "notice error" : "notice" },
      item.text,
    );
  }
  const classes = ["msg"];
  if (item.mine) classes.push("mine");
  if (item.whisper) classes.push("whisper");
  return el(
    "li",
    { class: classes.join(" ") },
    avatar(item.from),
    el(
      "div",
      { class: "body" },
      el(
        "div",
        { class: "meta" },
        el("span", { class: "from" }, item.from),
        via(item.service),
        clock(item.at),
      ),
      el("div", { class: "msg-text text" }, item.text),
    ),
  );
}

function notice(text, key = state.current, error = false) {
  add(key, { kind: "notice", text, error });
}

// ------------------------------------------------------------ rendering

function renderLog() {
  const log = $("#log");
  const v = view(state.current);
  v.unread = 0;
  log.replaceChildren(...v.items.map(render));
  if (v.items.length === 0) {
    log.append(
      el(
        "li",
        { class: "empty" },
        isRoom(state.current)
          ? "No messages yet. Say hello!"
          : `This is the start of your private conversation with ${
            state.current.slice(1)
          }.`,
      ),
    );
  }
  log.scrollTop = log.scrollHeight;
}

function renderHeader() {
  const key = state.current;
  const name = key.slice(1);
  $("#view-title").textContent = key;
  if (isRoom(key)) {
    const count = (state.members.get(name) ?? []).length;
    $("#view-subtitle").textContent = state.joined.has(name)
      ? `${count} ${count === 1 ? "person" : "people"} here`
      : "You are not in this room";
    $("#leave-button").hidden = !state.joined.has(name);
  } else {
    $("#view-subtitle").textContent = "Private: only the two of you see this";
    $("#leave-button").hidden = true;
  }
  $("#composer-input").placeholder = isRoom(key)
    ? `Message ${key}`
    : `Message ${key} privately`;
  document.title = `${key} · wsgate chat${
    state.service ? ` · service ${state.service.name}` : ""
  }`;
}

function roomItem(name, people) {
  const key = `#${name}`;
  const v = state.views.get(key);
  const unread = v?.unread ?? 0;
  const classes = [];
  if (key === state.current) classes.push("current");
  if (state.joined.has(name)) classes.push("joined");
  return el(
    "li",
    { class: classes.join(" "), dataset: { room: name } },
    el(
      "button",
      { type: "button", onclick: () => openRoom(name) },
      el("span", { class: "name" }, `# ${name}`),
      unread > 0
        ? el("span", { class: "badge unread" }, unread)
        : el("span", { class: "badge", title: "people in the room" }, people),
    ),
  );
}

function renderSidebar() {
  const rooms = new Map(state.rooms.map((r) => [r.name, r.people]));
  for (const name of state.joined) if (!rooms.has(name)) rooms.set(name, 0);
  $("#rooms").replaceChildren(
    ...[...rooms].sort(([a], [b]) => a.localeCompare(b)).map(([name, people]) =>
      roomItem(name, people)
    ),
  );

  const directs = [...state.views.keys()].filter((k) => !isRoom(k)).sort();
  $("#directs").replaceChildren(
    ...directs.map((key) => {
      const unread = state.views.get(key).unread;
      return el(
        "li",
        {
          class: key === state.current ? "current" : "",
          dataset: { nick: key.slice(1) },
        },
        el(
          "button",
          { type: "button", onclick: () => openView(key) },
          avatar(key.slice(1), true),
          el("span", { class: "name" }, key.slice(1)),
          unread > 0 ? el("span", { class: "badge unread" }, unread) : null,
        ),
      );
    }),
  );
  $("#directs-empty").hidden = directs.length > 0;

  const room = isRoom(state.current) ? state.current.slice(1) : undefined;
  const members = room === undefined ? [] : state.members.get(room) ?? [];
  $("#members-room").textContent = room === undefined ? "" : `in #${room}`;
  $("#members-hint").hidden = room !== undefined;
  $("#members").replaceChildren(
    ...members.map((nick) =>
      el(
        "li",
        { class: nick === state.nick ? "self" : "", dataset: { nick } },
        el(
          "button",
          {
            type: "button",
            title: nick === state.nick ? "You" : `Write to ${nick} privately`,
            onclick: () => nick !== state.nick && openView(`@${nick}`),
          },
          avatar(nick, true),
          el(
            "span",
            { class: "name" },
            nick === state.nick ? `${nick} (you)` : nick,
          ),
        ),
      )
    ),
  );
}

function renderStatus() {
  const pill = $("#service");
  if (state.connected && state.service) {
    pill.classList.remove("offline");
    pill.style.setProperty(
      "--svc-hue",
      String(serviceHue(state.service.name)),
    );
    $("#service-text").textContent =
      `Connected to service ${state.service.name} · node ${state.service.nodeId}`;
  } else {
    pill.classList.add("offline");
    $("#service-text").textContent = state.everConnected
      ? "reconnecting…"
      : "connecting…";
  }
  $("#online .count").textContent = state.connected ? state.online : "–";
  const composerOn = state.connected &&
    (!isRoom(state.current) || state.joined.has(state.current.slice(1)));
  $("#composer-input").disabled = !composerOn;
  $("#composer button").disabled = !composerOn;
}

function renderAll() {
  renderHeader();
  renderSidebar();
  renderLog();
  renderStatus();
}

// ------------------------------------------------------------ actions

/**
 * Sends an event; while the connection is down the client library holds it
 * and sends it after reconnecting. False when it cannot be sent.
 */
function send(event) {
  if (state.client === undefined || state.client.state === "closed") {
    return false;
  }
  try {
    state.client.send(JSON.stringify(event));
    return true;
  } catch {
    return false; // the library holds as much as it may while reconnecting
  }
}

function openView(key) {
  state.current = key;
  view(key).unread = 0;
  renderAll();
  $("#composer-input").focus();
}

function openRoom(name) {
  if (!state.joined.has(name)) {
    state.joined.add(name);
    send({ type: "join", room: name });
  }
  openView(`#${name}`);
}

function leaveRoom(name) {
  state.joined.delete(name);
  state.members.delete(name);
  send({ type: "leave", room: name });
  const next = state.joined.has("lobby") ? "lobby" : [...state.joined][0];
  if (next !== undefined) openView(`#${next}`);
  else renderAll();
}

// ------------------------------------------------------------ events

const handlers = {
  welcome(event) {
    state.service = event.service;
    state.online = event.online;
    state.rooms = event.rooms;
    state.connected = true;
    $("#banner").hidden = true;
    if (state.everConnected) {
      notice(`Reconnected, now through service ${event.service.name}`);
    }
    state.everConnected = true;
    for (const room of state.joined) send({ type: "join", room });
    renderAll();
  },
  rejected(event) {
    state.rejected = true;
    showNickDialog(event.reason);
  },
  online(event) {
    state.online = event.count;
    renderStatus();
  },
  rooms(event) {
    state.rooms = event.rooms;
    renderSidebar();
  },
  members(event) {
    if (!state.joined.has(event.room)) return;
    state.members.set(event.room, event.members);
    renderSidebar();
    renderHeader();
  },
  joined(event) {
    const who = event.nick === state.nick ? "You" : event.nick;
    notice(
      `${who} joined #${event.room} · via ${event.service}`,
      `#${event.room}`,
    );
  },
  left(event) {
    notice(`${event.nick} left #${event.room}`, `#${event.room}`);
  },
  message(event) {
    add(`#${event.room}`, messageItem(event));
  },
  whisper(event) {
    const peer = event.from === state.nick ? event.to : event.from;
    const key = `@${peer}`;
    const fresh = !state.views.has(key);
    add(key, messageItem(event, true));
    if (fresh) renderSidebar();
  },
  error(event) {
    // A join the service refused: the room is not ours after all.
    if (typeof event.room === "string" && state.joined.delete(event.room)) {
      state.members.delete(event.room);
      if (state.current === `#${event.room}`) {
        state.current = state.joined.has("lobby") ? "#lobby" : state.current;
      }
      renderAll();
    }
    notice(event.text, state.current, true);
  },
};

/** The WebSocket URLs of this page's service, then of the others given. */
function serviceUrls() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const hosts = [location.host];
  const others = new URLSearchParams(location.search).get("services") ?? "";
  for (const host of others.split(",").map((h) => h.trim())) {
    if (host !== "" && !hosts.includes(host)) hosts.push(host);
  }
  const nick = encodeURIComponent(state.nick);
  return hosts.map((host) => `${scheme}//${host}/?nick=${nick}`);
}

function start() {
  state.client?.close();
  state.rejected = false;
  const client = connect(serviceUrls());
  state.client = client;
  client.addEventListener("message", (message) => {
    if (typeof message.data !== "string") return;
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    handlers[event.type]?.(event);
  });
  client.addEventListener("close", (event) => {
    if (state.client !== client) return;
    state.connected = false;
    renderStatus();
    if (state.rejected) return;
    const banner = $("#banner");
    const from = state.service
      ? `service ${state.service.name}`
      : "the service";
    banner.textContent = event.detail.reconnecting
      ? `Lost the connection to ${from}. Reconnecting…`
      : `Disconnected from ${from} (${
        event.detail.reason || `code ${event.detail.code}`
      }). Reload the page to try again.`;
    banner.hidden = false;
  });
}

// ------------------------------------------------------------ forms

function showNickDialog(error) {
  $("#nick-dialog").hidden = false;
  $("#nick-input").value = state.nick || localStorage.getItem("nick") || "";
  $("#nick-error").textContent = error ?? "";
  $("#nick-error").hidden = !error;
  $("#nick-input").focus();
}

$("#nick-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const nick = $("#nick-input").value.trim();
  if (!NICK.test(nick)) {
    $("#nick-error").textContent =
      "Use 1 to 24 letters, digits, dots, dashes or underscores.";
    $("#nick-error").hidden = false;
    return;
  }
  state.nick = nick;
  localStorage.setItem("nick", nick);
  $("#nick-dialog").hidden = true;
  $("#me").hidden = false;
  $("#me .nick").textContent = nick;
  $("#me .avatar").replaceWith(avatar(nick, true));
  start();
});

$("#join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("#join-input");
  const name = input.value.trim().toLowerCase().replace(/^#/, "");
  if (!ROOM.test(name)) {
    notice(
      "A room name is 1 to 24 lowercase letters, digits, dashes or underscores.",
      state.current,
      true,
    );
    return;
  }
  input.value = "";
  openRoom(name);
});

$("#composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("#composer-input");
  const text = input.value.trim();
  if (text.length === 0) return;
  const key = state.current;
  const sent = isRoom(key)
    ? send({ type: "say", room: key.slice(1), text })
    : send({ type: "whisper", to: key.slice(1), text });
  if (sent) input.value = "";
});

$("#leave-button").addEventListener("click", () => {
  if (isRoom(state.current)) leaveRoom(state.current.slice(1));
});

renderAll();
showNickDialog();
