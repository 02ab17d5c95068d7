// The wsrelay dashboard. Reads GET /admin/events with fetch() (EventSource cannot send the
// Authorization header) and renders each snapshot; the token lives in sessionStorage only.
// Everything shown from the server is set with textContent: routes and names are client input.
"use strict";

const KEY = "wsrelay.dashboard.token";
const HISTORY = 300; // points kept per plot: five minutes at one snapshot a second
const $ = (id) => document.getElementById(id);

let token = sessionStorage.getItem(KEY);
let controller = null;
let retryDelay = 1000;
let previous = null;
let lastSnapshot = null;
const series = { connections: [], rate: [], in: [], out: [] };

function setStatus(state, text) {
  const el = $("status");
  el.dataset.state = state;
  el.textContent = text;
}

function showLogin(error) {
  $("board").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  const err = $("login-error");
  err.hidden = !error;
  err.textContent = error || "";
}

function showBoard() {
  $("login").hidden = true;
  $("board").hidden = false;
  $("logout").hidden = false;
}

async function connect() {
  if (!token) { showLogin(); return; }
  showBoard();
  controller = new AbortController();
  setStatus("connecting", "connecting");
  let response;
  try {
    response = await fetch("/admin/events", {
      headers: { Authorization: "Bearer " + token },
      cache: "no-store",
      signal: controller.signal,
    });
  } catch (e) {
    return retry();
  }
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    token = null;
    setStatus("error", "bad token");
    showLogin("The token was refused.");
    return;
  }
  if (!response.ok || !response.body) { return retry(); }
  retryDelay = 1000;
  setStatus("live", "live");
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (data) render(JSON.parse(data));
      }
    }
  } catch (e) {
    if (controller.signal.aborted) return;
  }
  retry();
}

function retry() {
  if (!token || (controller && controller.signal.aborted)) return;
  setStatus("retrying", "reconnecting in " + Math.round(retryDelay / 1000) + " s");
  setTimeout(connect, retryDelay);
  retryDelay = Math.min(retryDelay * 2, 10000);
}

function push(name, value) {
  const s = series[name];
  s.push(value);
  if (s.length > HISTORY) s.shift();
  const svg = $("plot-" + name);
  let line = svg.querySelector("polyline");
  if (!line) {
    line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    svg.appendChild(line);
  }
  const max = Math.max(1, ...s);
  const step = 300 / (HISTORY - 1);
  const offset = HISTORY - s.length;
  line.setAttribute("points", s.map((v, i) => ((offset + i) * step).toFixed(1) + "," + (58 - (v / max) * 56).toFixed(1)).join(" "));
}

function metric(name, text) {
  document.querySelector('[data-metric="' + name + '"]').textContent = text;
}

function fmtRate(x) { return x < 10 ? x.toFixed(1) : Math.round(x).toString(); }
function fmtAge(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}
function fmtBytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1048576).toFixed(1) + " MiB";
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function actionCell(label, onClick) {
  const td = document.createElement("td");
  const b = document.createElement("button");
  b.type = "button";
  b.className = "danger";
  b.textContent = label;
  b.addEventListener("click", onClick);
  td.appendChild(b);
  return td;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

// Updates a table in place, one row per key, so that a row's button stays the same element
// from one snapshot to the next (a click is not lost to a re-render).
function fillKeyed(tbody, items, keyOf, textsOf, action) {
  const old = new Map([...tbody.children].map((tr) => [tr.dataset.key, tr]));
  const rows = items.map((item) => {
    const key = keyOf(item);
    const texts = textsOf(item);
    let tr = old.get(key);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.key = key;
      tr.append(...texts.map((t) => cell(t)));
      if (action) tr.append(actionCell(action.label, () => action.run(key)));
    } else {
      texts.forEach((t, i) => { if (tr.children[i].textContent !== t) tr.children[i].textContent = t; });
    }
    return tr;
  });
  const same = rows.length === tbody.children.length && rows.every((tr, i) => tbody.children[i] === tr);
  if (!same) tbody.replaceChildren(...rows);
}

function render(s) {
  lastSnapshot = s;
  metric("connections", String(s.connections));
  metric("processes", String(s.processes));
  const lua = s.lua_errors;
  metric("lua-errors", String(lua.process + lua.function + lua.timeout));
  $("lua-detail").textContent = "process " + lua.process + " · function " + lua.function + " · timeout " + lua.timeout;
  $("draining").textContent = s.draining ? "draining" : "";
  let rate = 0, rin = 0, rout = 0;
  if (previous) {
    const dt = Math.max(0.001, (s.time_ms - previous.time_ms) / 1000);
    rate = Math.max(0, s.upgrades.accepted - previous.upgrades.accepted) / dt;
    rin = Math.max(0, s.frames.in - previous.frames.in) / dt;
    rout = Math.max(0, s.frames.out - previous.frames.out) / dt;
  }
  previous = s;
  metric("connection-rate", fmtRate(rate));
  metric("messages-in", fmtRate(rin));
  metric("messages-out", fmtRate(rout));
  push("connections", s.connections);
  push("rate", rate);
  push("in", rin);
  push("out", rout);

  fill($("hosts"), s.hosts.map((h) => {
    const tr = document.createElement("tr");
    tr.append(cell(h.id), cell(String(h.processes)));
    return tr;
  }));
  fillKeyed($("busiest"), s.busiest, (p) => p.pid,
    (p) => [p.names.length ? p.pid + " (" + p.names.join(", ") + ")" : p.pid, String(p.inbox_len), String(p.inbox_peak)],
    { label: "terminate", run: confirmTerminate });
  if (s.cluster) {
    $("cluster-summary").textContent = "node " + s.cluster.node + " · NATS " +
      (s.cluster.connected ? "connected" : "disconnected") + " · session resets " +
      s.cluster.session_resets + " · peers declared down " + s.cluster.peer_downs;
    fill($("peers"), s.cluster.peers.map((p) => {
      const tr = document.createElement("tr");
      tr.append(cell(p.name), cell(p.up ? "up" : "down", p.up ? "up" : "down"));
      return tr;
    }));
  } else {
    $("cluster-summary").textContent = "not clustered";
    fill($("peers"), []);
  }
  renderRows();
}

function renderRows() {
  const s = lastSnapshot;
  if (!s) return;
  const q = $("search").value.trim().toLowerCase();
  const rows = s.rows.filter((c) => !q || [c.pid, c.peer || "", c.route, c.target].some((f) => f.toLowerCase().includes(q)));
  $("rows-note").textContent = s.rows_total > s.rows.length
    ? "(showing the " + s.rows.length + " oldest of " + s.rows_total + ")"
    : "(" + s.rows_total + ")";
  fillKeyed($("rows"), rows, (c) => c.pid,
    (c) => [c.pid, c.peer || "–", c.route, c.target, fmtAge(c.age_ms), fmtBytes(c.bytes_in),
      fmtBytes(c.bytes_out), String(c.queue_depth)],
    { label: "close", run: confirmClose });
}

// ===== actions, each behind a confirmation =====

let pending = null;

function ask(text, withCode, action) {
  pending = action;
  $("confirm-text").textContent = text;
  $("confirm-code-row").hidden = !withCode;
  $("confirm-error").hidden = true;
  $("confirm").showModal();
}

function confirmClose(pid) {
  ask("Close connection " + pid + "?", true, (form) => {
    const params = new URLSearchParams({ code: form.code.value, reason: form.reason.value });
    return "/admin/connections/" + encodeURIComponent(pid) + "/close?" + params;
  });
}

function confirmTerminate(pid) {
  ask("Terminate process " + pid + "?", false, () => "/admin/processes/" + encodeURIComponent(pid) + "/terminate");
}

async function runAction(event) {
  event.preventDefault();
  if (!pending) return;
  const url = pending($("confirm-form"));
  const response = await fetch(url, { method: "POST", headers: { Authorization: "Bearer " + token } }).catch(() => null);
  if (response && response.ok) {
    pending = null;
    $("confirm").close();
  } else {
    const err = $("confirm-error");
    err.hidden = false;
    err.textContent = response ? (await response.text()) : "request failed";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    token = event.target.token.value.trim();
    if (!token) return;
    sessionStorage.setItem(KEY, token);
    event.target.reset();
    connect();
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    token = null;
    if (controller) controller.abort();
    setStatus("idle", "not connected");
    showLogin();
  });
  $("search").addEventListener("input", renderRows);
  $("confirm-form").addEventListener("submit", runAction);
  $("confirm-cancel").addEventListener("click", () => { pending = null; $("confirm").close(); });
  connect();
});
