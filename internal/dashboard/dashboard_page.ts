// The dashboard page: one HTML document with its style and script inline,
// no build step and nothing from elsewhere (no fonts, no CDN; charts are
// inline SVG). The content security policy sent with it allows exactly
// this style and script, and requests to the register itself.
//
// The script polls `GET /dashboard/state` every interval and draws the
// answer with textContent and DOM calls only (never innerHTML): names and
// addresses come from the services. With a dashboard token it asks for it
// in a form and keeps it in sessionStorage (this tab only), sending it as
// `authorization: Bearer <token>`.

import { createHash } from "node:crypto";

const STYLE = `
:root {
  --bg: #f6f7f9; --panel: #fff; --text: #1d232b; --muted: #5f6b7a;
  --line: #e2e6eb; --in: #2b7bd6; --out: #e07b24; --clients: #3d9a57;
  --p99: #c43d35; --avg: #8a63c2; --good: #2f9e55; --warn: #c98a12;
  --bad: #c43d35;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #14171c; --panel: #1d2229; --text: #e6e9ee; --muted: #97a2b0;
    --line: #2d343d;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--text);
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
header {
  display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 16px;
  padding: 12px 20px; background: var(--panel);
  border-bottom: 1px solid var(--line);
}
h1 { font-size: 18px; margin: 0; }
h1 span { color: var(--muted); font-weight: 400; }
h2 { font-size: 14px; margin: 0 0 8px; }
#register-line { color: var(--muted); flex: 1; }
.status::before {
  content: ""; display: inline-block; width: 8px; height: 8px;
  border-radius: 50%; margin-right: 6px; background: var(--muted);
}
.status.ok::before { background: var(--good); }
.status.warn::before { background: var(--warn); }
.status.bad::before { background: var(--bad); }
main { padding: 16px 20px; max-width: 1400px; margin: 0 auto; }
section { margin-bottom: 16px; }
.panel {
  background: var(--panel); border: 1px solid var(--line);
  border-radius: 6px; padding: 12px;
}
#auth form { max-width: 420px; }
#auth label { display: block; margin: 8px 0 4px; color: var(--muted); }
#auth input {
  width: 100%; padding: 6px 8px; font: inherit; color: inherit;
  background: var(--bg); border: 1px solid var(--line); border-radius: 4px;
}
#auth button {
  margin-top: 10px; padding: 6px 14px; font: inherit; cursor: pointer;
  border: 0; border-radius: 4px; background: var(--in); color: #fff;
}
#auth-message, #notice-text { margin: 0; }
#auth-message.error, #notice-text { color: var(--bad); }
.tiles {
  display: grid; gap: 10px;
  grid-template-columns: repeat(auto-fit, minmax(120px, 1fr));
}
.tile {
  background: var(--panel); border: 1px solid var(--line);
  border-radius: 6px; padding: 8px 12px;
}
.tile .label { display: block; color: var(--muted); font-size: 12px; }
.tile .value {
  display: block; font-size: 22px; font-variant-numeric: tabular-nums;
}
.charts {
  display: grid; gap: 10px;
  grid-template-columns: repeat(auto-fit, minmax(300px, 1fr));
}
figure { margin: 0; }
figcaption { display: flex; gap: 12px; margin-bottom: 6px; }
figcaption .legend { color: var(--muted); font-size: 12px; margin-left: auto; }
.legend i {
  display: inline-block; width: 10px; height: 3px; margin: 0 4px 3px 8px;
  vertical-align: middle;
}
.legend i.in { background: var(--in); }
.legend i.out { background: var(--out); }
.legend i.clients { background: var(--clients); }
.legend i.p99 { background: var(--p99); }
.legend i.avg { background: var(--avg); }
.chart svg {
  display: block; width: 100%; height: 110px; overflow: hidden;
  border-left: 1px solid var(--line); border-bottom: 1px solid var(--line);
}
.axis {
  display: flex; justify-content: space-between; color: var(--muted);
  font-size: 11px; font-variant-numeric: tabular-nums;
}
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .line { fill: none; stroke-width: 1.6; vector-effect: non-scaling-stroke; }
svg .in { stroke: var(--in); }
svg .out { stroke: var(--out); }
svg .clients { stroke: var(--clients); }
svg .p99 { stroke: var(--p99); }
svg .avg { stroke: var(--avg); }
.table-wrap { overflow-x: auto; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td {
  text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
  white-space: nowrap;
}
th { color: var(--muted); font-weight: 500; font-size: 12px; }
td.num, th.num { text-align: right; }
td .sub { display: block; color: var(--muted); font-size: 11px; }
.badge {
  display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 12px;
  border: 1px solid currentColor;
}
.badge.ready, .badge.up { color: var(--good); }
.badge.starting, .badge.partial, .badge.closing { color: var(--warn); }
.badge.stale, .badge.down { color: var(--bad); }
.badge.no-stats { color: var(--muted); }
svg.spark { width: 90px; height: 22px; display: block; }
.muted { color: var(--muted); }
footer { color: var(--muted); font-size: 12px; padding: 0 20px 20px; }
`;

const SCRIPT = `
"use strict";
const TOKEN_KEY = "wsgate-dashboard-token";
const STATE_PATH = "/dashboard/state";
const MIN_SPAN_MS = 60 * 1000;
const MAX_SPAN_MS = 5 * 60 * 1000;
const SVG = "http://www.w3.org/2000/svg";
let intervalMs = 2000;
let timer;
let lastOk = 0;

const $ = (id) => document.getElementById(id);

function storedToken() {
  try { return sessionStorage.getItem(TOKEN_KEY); } catch { return null; }
}
function storeToken(token) {
  try {
    if (token === null) sessionStorage.removeItem(TOKEN_KEY);
    else sessionStorage.setItem(TOKEN_KEY, token);
  } catch { /* storage off: the token lives in memory only */ }
  memoryToken = token;
}
let memoryToken = storedToken();

function setStatus(text, level) {
  const status = $("status");
  status.textContent = text;
  status.className = "status " + level;
}

function show(id, visible) { $(id).hidden = !visible; }

function showAuth(message, isError) {
  show("content", false);
  show("notice", false);
  show("auth", true);
  const text = $("auth-message");
  text.textContent = message;
  text.className = isError ? "error" : "";
  $("token-input").focus();
  setStatus("token needed", "warn");
}

function showNotice(message) {
  show("content", false);
  show("auth", false);
  show("notice", true);
  $("notice-text").textContent = message;
  setStatus("dashboard off", "bad");
}

async function poll() {
  clearTimeout(timer);
  let next = intervalMs;
  try {
    const headers = {};
    const token = memoryToken;
    if (token) headers.authorization = "Bearer " + token;
    const response = await fetch(STATE_PATH, {
      headers, cache: "no-store", credentials: "omit",
    });
    const body = await response.json().catch(() => null);
    const message = body && body.error && typeof body.error.message === "string"
      ? body.error.message : "The register answered " + response.status;
    if (response.ok && body) {
      show("auth", false);
      show("notice", false);
      show("content", true);
      intervalMs = Math.min(Math.max(body.intervalMs || 2000, 500), 60000);
      next = intervalMs;
      lastOk = Date.now();
      draw(body);
      setStatus("live · updated " + new Date(body.now).toLocaleTimeString(), "ok");
    } else if (response.status === 401 || response.status === 429) {
      if (token && body && body.error && body.error.code === "dashboard_token_wrong") {
        storeToken(null);
      }
      showAuth(message, token !== null && token !== "");
      next = null;
    } else if (response.status === 403) {
      showNotice(message);
      next = 10000;
    } else {
      setStatus(message + "; retrying", "bad");
    }
  } catch (error) {
    const stale = lastOk > 0 ? " (last update " +
      Math.round((Date.now() - lastOk) / 1000) + " s ago)" : "";
    setStatus("register unreachable; retrying" + stale, "bad");
  }
  if (next !== null) timer = setTimeout(poll, next);
}

$("auth-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token-input").value;
  if (token === "") return;
  storeToken(token);
  $("token-input").value = "";
  $("auth-message").textContent = "Checking…";
  poll();
});

function num(n) {
  if (n === null || n === undefined) return "—";
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return Number.isInteger(n) ? String(n) : n.toFixed(n < 10 ? 1 : 0);
}
function ms(n) {
  if (n === null || n === undefined) return "—";
  return n < 10 ? n.toFixed(2) + " ms" : n < 1000 ? Math.round(n) + " ms"
    : (n / 1000).toFixed(2) + " s";
}
function duration(n) {
  if (n === null || n === undefined) return "—";
  const s = Math.floor(n / 1000);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600),
    m = Math.floor(s % 3600 / 60);
  if (d > 0) return d + "d " + h + "h";
  if (h > 0) return h + "h " + m + "m";
  if (m > 0) return m + "m " + (s % 60) + "s";
  return s + "s";
}
function bytes(n) {
  if (n === null || n === undefined) return "—";
  return n >= 1 << 30 ? (n / (1 << 30)).toFixed(1) + " GiB"
    : (n / (1 << 20)).toFixed(0) + " MiB";
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}
function cell(row, text, className, sub) {
  const td = el("td", text, className);
  if (sub) td.append(el("span", sub, "sub"));
  row.append(td);
  return td;
}
function badge(text) { return el("span", text, "badge " + text); }

function niceMax(max) {
  if (!(max > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(max)));
  for (const f of [1, 2, 2.5, 5, 10]) if (f * p >= max) return f * p;
  return 10 * p;
}

function svgNode(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const k in attrs) node.setAttribute(k, String(attrs[k]));
  return node;
}

// series: [{ cls, points: [[x 0..1, y or null]] }]
function plot(svg, width, height, series, max) {
  svg.replaceChildren();
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  svg.setAttribute("preserveAspectRatio", "none");
  for (const f of [0.5]) {
    svg.append(svgNode("line", {
      x1: 0, x2: width, y1: height * f, y2: height * f, class: "grid",
      "vector-effect": "non-scaling-stroke",
    }));
  }
  for (const s of series) {
    let run = [];
    const flush = () => {
      if (run.length === 1) run.push([run[0][0] + 1, run[0][1]]);
      if (run.length > 1) {
        svg.append(svgNode("polyline", {
          points: run.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1))
            .join(" "),
          class: "line " + s.cls,
        }));
      }
      run = [];
    };
    for (const [x, y] of s.points) {
      if (y === null || y === undefined) { flush(); continue; }
      run.push([x * width, height - Math.min(y / max, 1) * height]);
    }
    flush();
  }
}

// The charts span the history there is, from 1 to 5 minutes.
function chart(id, history, now, lines) {
  const svg = $(id);
  let max = 0;
  for (const l of lines) for (const p of history) max = Math.max(max, p[l.key] || 0);
  max = niceMax(max);
  const oldest = history.length > 0 ? history[0].t : now;
  const span = Math.min(Math.max(now - oldest, MIN_SPAN_MS), MAX_SPAN_MS);
  plot(svg, 300, 100, lines.map((l) => ({
    cls: l.cls,
    points: history.map((p) => [1 - (now - p.t) / span, p[l.key]]),
  })), max);
  $(id + "-max").textContent = lines[0].unit === "ms" ? ms(max) : num(max);
  $(id + "-span").textContent = duration(span) + " ago";
}

function spark(values, other) {
  const svg = svgNode("svg", { class: "spark" });
  const max = niceMax(Math.max(0, ...values, ...other));
  const n = Math.max(values.length - 1, 1);
  plot(svg, 90, 22, [
    { cls: "in", points: values.map((v, i) => [i / n, v]) },
    { cls: "out", points: other.map((v, i) => [i / n, v]) },
  ], max);
  return svg;
}

function draw(state) {
  const r = state.register;
  $("register-line").textContent = "register " + r.registerId + " on " +
    r.address + " · up " + duration(r.uptimeMs) + " · member list v" +
    r.memberListVersion;
  const t = state.totals;
  $("t-services").textContent = num(t.services);
  $("t-clients").textContent = num(t.clients);
  $("t-uids").textContent = num(t.uids);
  $("t-groups").textContent = num(t.groups);
  $("t-in").textContent = num(t.messagesInPerSec);
  $("t-out").textContent = num(t.messagesOutPerSec);
  $("t-latency").textContent = ms(t.peerDelivery.p99Ms);
  $("t-slow").textContent = num(t.closes.slowConsumer);
  $("t-rate").textContent = num(t.closes.rateLimit);

  chart("chart-messages", state.history, state.now, [
    { key: "messagesInPerSec", cls: "in" },
    { key: "messagesOutPerSec", cls: "out" },
  ]);
  chart("chart-clients", state.history, state.now, [
    { key: "clients", cls: "clients" },
  ]);
  chart("chart-latency", state.history, state.now, [
    { key: "peerDeliveryP99Ms", cls: "p99", unit: "ms" },
    { key: "peerDeliveryAvgMs", cls: "avg", unit: "ms" },
  ]);

  const registers = $("registers").tBodies[0];
  registers.replaceChildren();
  for (const g of state.registers) {
    const row = el("tr");
    row.dataset.address = g.address;
    cell(row, g.address, "address", g.self ? "this register" : undefined);
    cell(row, g.registerId || "—", "id muted");
    cell(row, "", "state").append(badge(g.state));
    cell(row, g.connectedServices + " of " + g.linkedServices, "num linked");
    cell(row, duration(g.uptimeMs), "num uptime");
    registers.append(row);
  }
  $("registers-omitted").textContent = state.omittedRegisters > 0
    ? state.omittedRegisters + " more registers not shown" : "";

  const services = $("services").tBodies[0];
  services.replaceChildren();
  for (const s of state.services) {
    const row = el("tr");
    row.dataset.nodeId = s.nodeId;
    row.dataset.name = s.name;
    cell(row, s.name, "name", s.name === s.nodeId ? undefined : s.nodeId);
    cell(row, s.websocketAddress || "—", "address", "rpc " + s.rpcAddress);
    cell(row, "", "state").append(badge(s.state));
    cell(row, duration(s.uptimeMs), "num uptime");
    cell(row, String(s.clients), "num clients");
    cell(row, String(s.uids), "num uids");
    cell(row, String(s.groups), "num groups");
    cell(row, num(s.messagesInPerSec), "num in");
    cell(row, num(s.messagesOutPerSec), "num out");
    cell(row, "", "spark").append(
      spark(s.history.messagesInPerSec, s.history.messagesOutPerSec),
    );
    cell(row, ms(s.peerDelivery.p99Ms), "num latency",
      s.peerDelivery.avgMs === null ? undefined : "avg " + ms(s.peerDelivery.avgMs));
    cell(row, String(s.closes.slowConsumer), "num slow");
    cell(row, String(s.closes.rateLimit), "num rate-limited");
    cell(row, String(s.closes.tooBig + s.closes.protocolError), "num other-closes");
    cell(row, bytes(s.rssBytes), "num memory");
    services.append(row);
  }
  $("services-omitted").textContent = state.omittedServices > 0
    ? state.omittedServices + " more services not shown (the totals count them)"
    : "";
  $("interval").textContent = String(Math.round(state.intervalMs / 100) / 10);
}

poll();
`;

const TILES: readonly (readonly [id: string, label: string])[] = [
  ["t-services", "Services"],
  ["t-clients", "Clients"],
  ["t-uids", "Uids"],
  ["t-groups", "Groups"],
  ["t-in", "Messages in /s"],
  ["t-out", "Messages out /s"],
  ["t-latency", "Peer delivery p99 (1 min)"],
  ["t-slow", "Slow-consumer closes"],
  ["t-rate", "Rate-limit closes"],
];

const SERVICE_COLUMNS = [
  ["Service", ""],
  ["WebSocket", ""],
  ["State", ""],
  ["Uptime", "num"],
  ["Clients", "num"],
  ["Uids", "num"],
  ["Groups", "num"],
  ["In /s", "num"],
  ["Out /s", "num"],
  ["Last minute", ""],
  ["Peer delivery p99", "num"],
  ["Slow-consumer", "num"],
  ["Rate-limit", "num"],
  ["Other closes", "num"],
  ["Memory", "num"],
];

function heads(columns: readonly (readonly [string, string])[]): string {
  return columns.map(([label, cls]) =>
    cls === "" ? `<th>${label}</th>` : `<th class="${cls}">${label}</th>`
  ).join("");
}

function figure(id: string, title: string, legend: string): string {
  return `<figure class="chart panel"><figcaption>${title}<span class="legend">${legend}</span></figcaption><svg id="${id}" role="img" aria-label="${title}"></svg><div class="axis"><span id="${id}-span"></span><span>max <span id="${id}-max"></span></span><span>now</span></div></figure>`;
}

const BODY = `<header>
<h1>wsgate <span>dashboard</span></h1>
<div id="register-line"></div>
<div id="status" class="status">connecting…</div>
</header>
<main>
<section id="notice" class="panel" hidden><p id="notice-text"></p></section>
<section id="auth" class="panel" hidden>
<form id="auth-form">
<h2>Dashboard token</h2>
<p id="auth-message"></p>
<label for="token-input">Token</label>
<input id="token-input" name="token" type="password" autocomplete="current-password">
<button type="submit">Show the dashboard</button>
</form>
</section>
<div id="content" hidden>
<section class="tiles">${
  TILES.map(([id, label]) =>
    `<div class="tile"><span class="label">${label}</span><span class="value" id="${id}">—</span></div>`
  ).join("")
}</section>
<section class="charts">${
  figure(
    "chart-messages",
    "Messages per second",
    '<i class="in"></i>in<i class="out"></i>out',
  )
}${figure("chart-clients", "Clients", '<i class="clients"></i>clients')}${
  figure(
    "chart-latency",
    "Peer delivery latency",
    '<i class="p99"></i>p99<i class="avg"></i>avg',
  )
}</section>
<section class="panel"><h2>Registers</h2><div class="table-wrap"><table id="registers"><thead><tr>${
  heads([
    ["Address", ""],
    ["Register id", ""],
    ["State", ""],
    ["Services connected", "num"],
    ["Uptime", "num"],
  ])
}</tr></thead><tbody></tbody></table></div><p id="registers-omitted" class="muted"></p></section>
<section class="panel"><h2>Services</h2><div class="table-wrap"><table id="services"><thead><tr>${
  heads(SERVICE_COLUMNS as [string, string][])
}</tr></thead><tbody></tbody></table></div><p id="services-omitted" class="muted"></p></section>
</div>
</main>
<footer>Read-only. Services report every <span id="interval">2</span> s; rates are over the last report, latency over the last minute. Uids and groups are counted per service, so the totals count one on two services twice.</footer>`;

/** The dashboard page, whole. */
export const DASHBOARD_PAGE: string = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wsgate dashboard</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
${BODY}
<script>${SCRIPT}</script>
</body>
</html>
`;

function sha256(text: string): string {
  return `'sha256-${createHash("sha256").update(text).digest("base64")}'`;
}

/**
 * The content security policy of {@linkcode DASHBOARD_PAGE}: its own style
 * and script, fetches to the register, nothing else.
 */
export const DASHBOARD_CSP: string = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  "img-src data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");
