"""pycron's web page: one self-contained HTML document (inline CSS and JavaScript, nothing fetched
from elsewhere), served at ``GET /`` with a Content-Security-Policy that allows exactly these
inline blocks (by hash, see :mod:`pycron.web`).

A table of the jobs with Start/Stop/Restart buttons, a token field (kept in ``sessionStorage`` and
sent as ``Authorization: Bearer``), live updates from ``EventSource('/events')`` (each event
re-fetches ``/processes``; a slow refresh keeps uptimes current) and the last events.
"""

from __future__ import annotations

import json

from pycron.api import EVENT_KINDS

STYLE = """
:root { color-scheme: light dark; --muted: #888; --line: rgba(127,127,127,.25); }
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; }
h1 { font-size: 1.3rem; margin: 0 0 .8rem; }
h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
header { display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; }
#status { color: #c0392b; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line); }
th { font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.reason { color: var(--muted); max-width: 30rem; overflow-wrap: anywhere; }
button { margin-right: .3rem; }
.state { font-weight: 600; }
.ready { color: #27ae60; }
.starting, .stopping { color: #d4ac0d; }
.unhealthy, .backoff { color: #e67e22; }
.fatal { color: #c0392b; }
.exited, .stopped { color: var(--muted); }
#events { list-style: none; padding: 0; margin: 0; font-family: ui-monospace, monospace; font-size: 12.5px; }
#events li { padding: .15rem 0; border-bottom: 1px solid var(--line); }
#events .at { color: var(--muted); margin-right: .6rem; }
"""

SCRIPT = """
"use strict";
const KINDS = __KINDS__;
const MAX_EVENTS = 50;
const TOKEN_KEY = "pycron.token";
const $ = (id) => document.getElementById(id);
const tokenInput = $("token");
tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || "";
tokenInput.addEventListener("change", () => sessionStorage.setItem(TOKEN_KEY, tokenInput.value.trim()));

function setStatus(text) { $("status").textContent = text; }

function uptime(seconds) {
  if (seconds === null || seconds === undefined) return "";
  let s = Math.floor(seconds);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m ${String(s).padStart(2, "0")}s`;
  return `${s}s`;
}

function clock(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return isNaN(date) ? String(iso) : date.toLocaleTimeString();
}

function lastExit(exit) {
  if (!exit) return "";
  const how = exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
  return `${how} at ${clock(exit.at)}`;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function render(jobs) {
  const body = $("jobs");
  body.replaceChildren();
  for (const job of jobs) {
    const row = document.createElement("tr");
    cell(row, job.name);
    cell(row, job.state + (job.maintenance ? " (maintenance)" : ""), `state ${job.state}`);
    cell(row, job.pid, "num");
    cell(row, uptime(job.uptime_s), "num");
    cell(row, job.restarts, "num");
    cell(row, lastExit(job.last_exit));
    cell(row, job.reason, "reason");
    const actions = cell(row, "");
    for (const action of ["start", "stop", "restart"]) {
      const button = document.createElement("button");
      button.textContent = action[0].toUpperCase() + action.slice(1);
      button.addEventListener("click", () => act(job.name, action, button));
      actions.appendChild(button);
    }
    body.appendChild(row);
  }
}

async function refresh() {
  try {
    const response = await fetch("/processes", { cache: "no-store" });
    const doc = await response.json();
    if (!response.ok) throw new Error(doc.error ? doc.error.message : response.statusText);
    render(doc);
  } catch (err) {
    setStatus(`cannot list the processes: ${err.message}`);
  }
}

let pending = null;
function refreshSoon() {
  if (pending === null) pending = setTimeout(() => { pending = null; refresh(); }, 150);
}

async function act(name, action, button) {
  const token = tokenInput.value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  button.disabled = true;
  try {
    const url = `/processes/${encodeURIComponent(name)}/${action}`;
    const response = await fetch(url, { method: "POST", headers });
    if (response.ok) {
      setStatus("");
    } else {
      const doc = await response.json().catch(() => null);
      setStatus(`${action} ${name}: ` + (doc && doc.error ? doc.error.message : response.statusText));
    }
  } catch (err) {
    setStatus(`${action} ${name}: ${err.message}`);
  } finally {
    button.disabled = false;
    refreshSoon();
  }
}

function addEvent(event) {
  const list = $("events");
  const item = document.createElement("li");
  const at = document.createElement("span");
  at.className = "at";
  at.textContent = clock(event.at);
  item.appendChild(at);
  const what = document.createElement("span");
  if (event.state) what.className = event.state;
  what.textContent = `${event.job || "pycron"} ${event.kind}` + (event.message ? `: ${event.message}` : "");
  item.appendChild(what);
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

const source = new EventSource("/events?since=-1");
for (const kind of KINDS) {
  source.addEventListener(kind, (message) => {
    try { addEvent(JSON.parse(message.data)); } catch (err) { /* not an event document */ }
    refreshSoon();
  });
}
source.addEventListener("open", () => { setStatus(""); refreshSoon(); });
source.addEventListener("error", () => setStatus("event stream lost; reconnecting..."));
setInterval(refresh, 5000);
refresh();
""".replace("__KINDS__", json.dumps(list(EVENT_KINDS)))

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pycron</title>
<style>{STYLE}</style>
</head>
<body>
<header>
  <h1>pycron</h1>
  <label>token <input id="token" type="password" autocomplete="off" size="36"
    placeholder="web.token, $BOURSE_PYCRON_TOKEN or data/pycron.token"></label>
  <span id="status" role="status"></span>
</header>
<table>
  <thead><tr><th>name</th><th>state</th><th>pid</th><th>uptime</th><th>restarts</th>
    <th>last exit</th><th>reason</th><th></th></tr></thead>
  <tbody id="jobs"></tbody>
</table>
<h2>events</h2>
<ul id="events"></ul>
<script>{SCRIPT}</script>
</body>
</html>
"""
