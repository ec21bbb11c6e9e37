// The dashboard page: copies /api/snapshot into the drawing and tables once a second, and shows the
// /api/logs stream. No framework and no network beyond this server, so it works offline.
"use strict";

const POLL_MS = 1000;
const MAX_LINES = 2000; // kept in the page; older lines drop off
const $ = (sel) => document.querySelector(sel);

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function row(cells) {
  const tr = document.createElement("tr");
  cells.forEach((c) => tr.appendChild(c));
  return tr;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

const fmt = {
  num: (v, d = 1) => (v === null || v === undefined ? "-" : Number(v).toFixed(d)),
  ms: (v) => (v === null || v === undefined ? "-" : `${Number(v).toFixed(0)} ms`),
  pct: (v) => (v === null || v === undefined ? "-" : `${(v * 100).toFixed(1)}%`),
  uptime: (s) => {
    if (s === null || s === undefined) return "-";
    s = Math.floor(s);
    return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
      : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  },
};

function render(snap) {
  const status = $("#status");
  status.textContent = snap.status;
  status.className = `badge ${snap.status}`;
  if (snap.gateway) { $("#gateway").textContent = snap.gateway; $("#gateway").href = snap.gateway; }
  $("#figures-from").textContent = `(${snap.figures_from})`;
  $("#updated").textContent = `updated ${new Date(snap.taken_at * 1000).toLocaleTimeString()}`;

  for (const [id, node] of Object.entries(snap.nodes)) {
    const g = document.querySelector(`[data-node="${CSS.escape(id)}"]`);
    if (!g) continue;
    g.dataset.health = node.health;
    g.querySelector(".line1").textContent = node.line1;
    g.querySelector(".line2").textContent = node.line2;
  }

  const routes = [];
  for (const [svc, s] of Object.entries(snap.services)) {
    for (const r of s.routes) {
      const tr = row([cell(svc), cell(r.method), cell(r.path), cell(fmt.num(r.rps), "num"), cell(fmt.ms(r.p95_ms), "num"),
        cell(fmt.pct(r.error_share), "num"), cell(fmt.num(r.total, 0), "num")]);
      tr.dataset.service = svc;
      tr.dataset.route = `${r.method} ${r.path}`;
      routes.push(tr);
    }
  }
  fill($("#routes tbody"), routes);

  fill($("#queues tbody"), Object.entries(snap.queues).map(([name, q]) => {
    const tr = row([cell(name), cell(fmt.num(q.depth, 0), "num"), cell(fmt.num(q.dlq, 0), "num"),
      cell(q.lag_s === undefined ? "-" : `${fmt.num(q.lag_s)} s`, "num")]);
    tr.dataset.queue = name;
    return tr;
  }));

  fill($("#processes tbody"), snap.processes.map((p) => {
    const tr = row([cell(p.name), cell(p.role), cell(p.health, `health-${p.health.replace(" ", "-")}`),
      cell(p.pid ?? "-", "num"), cell(p.restarts, "num"), cell(fmt.uptime(p.uptime_s), "num")]);
    tr.dataset.process = p.name;
    tr.dataset.health = p.health;
    return tr;
  }));
}

async function poll() {
  try {
    const resp = await fetch("/api/snapshot", { cache: "no-store" });
    if (resp.ok) render(await resp.json());
  } catch (err) {
    // The dashboard process itself restarting: keep the last picture and try again.
    $("#updated").textContent = "dashboard unreachable, retrying…";
  }
  setTimeout(poll, POLL_MS);
}

// ---- logs

const logs = { lines: [], known: new Set() };

function matches(line) {
  const proc = $("#log-process").value;
  const text = $("#log-filter").value.toLowerCase();
  return (!proc || line.process === proc) && (!text || line.text.toLowerCase().includes(text));
}

function lineNode(line) {
  const div = document.createElement("div");
  const name = document.createElement("span");
  name.className = "p";
  name.textContent = `${line.process} | `;
  div.appendChild(name);
  div.appendChild(document.createTextNode(line.text));
  if (line.text.startsWith("[supervisor]")) div.className = "sup";
  div.dataset.process = line.process;
  return div;
}

function addProcess(name) {
  if (logs.known.has(name)) return;
  logs.known.add(name);
  const opt = document.createElement("option");
  opt.value = name;
  opt.textContent = name;
  $("#log-process").appendChild(opt);
}

function redrawLogs() {
  const shown = logs.lines.filter(matches);
  $("#logs").replaceChildren(...shown.map(lineNode));
  $("#log-count").textContent = `${shown.length} of ${logs.lines.length} lines`;
  if ($("#log-follow").checked) $("#logs").scrollTop = $("#logs").scrollHeight;
}

function appendLogs(batch) {
  batch.forEach((l) => addProcess(l.process));
  logs.lines.push(...batch);
  if (logs.lines.length > MAX_LINES) {
    logs.lines.splice(0, logs.lines.length - MAX_LINES);
    redrawLogs();
    return;
  }
  const pre = $("#logs");
  batch.filter(matches).forEach((l) => pre.appendChild(lineNode(l)));
  $("#log-count").textContent = `${pre.childElementCount} of ${logs.lines.length} lines`;
  if ($("#log-follow").checked) pre.scrollTop = pre.scrollHeight;
}

function streamLogs() {
  const source = new EventSource("/api/logs");
  source.addEventListener("reset", (ev) => {
    logs.lines = [];
    JSON.parse(ev.data).processes.forEach(addProcess);
    redrawLogs();
  });
  source.addEventListener("lines", (ev) => appendLogs(JSON.parse(ev.data)));
  // EventSource reconnects by itself; the server starts each connection with "reset".
}

$("#log-process").addEventListener("change", redrawLogs);
$("#log-filter").addEventListener("input", redrawLogs);
poll();
streamLogs();
