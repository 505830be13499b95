// The Stratus dashboard: services, replicas, QPS and ready-replica charts, recent decisions.
// Plain JS, no build step. Data comes from the API with the token in a bearer header; every
// value is written with textContent (never parsed as HTML), as the CSP expects.
"use strict";

const KEY = "stratus-token";
const $ = (id) => document.getElementById(id);

function takeTokenFromFragment() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search); // out of the address bar
  }
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

async function api(path) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + sessionStorage.getItem(KEY) } });
  if (r.status === 401) { sessionStorage.removeItem(KEY); throw new Error("the token was refused"); }
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function table(headers, rows) {
  const t = el("table");
  const head = t.createTHead().insertRow();
  headers.forEach((h) => head.appendChild(el("th", h)));
  const body = t.createTBody();
  rows.forEach((cells) => {
    const tr = body.insertRow();
    cells.forEach((c) => { const td = tr.insertCell(); if (c instanceof Node) td.appendChild(c); else td.textContent = c; });
  });
  return t;
}

function chart(title, points, step) {
  const fig = el("figure");
  const c = el("canvas");
  c.width = 360; c.height = 120;
  fig.appendChild(c);
  fig.appendChild(el("figcaption", title));
  const g = c.getContext("2d");
  if (!points.length) { g.fillStyle = "#888"; g.fillText("no data in this range", 120, 60); return fig; }
  const now = Date.now() / 1000;
  const xs = points.map((p) => p[0]).concat([now]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), ymax = Math.max(1, ...points.map((p) => p[1]));
  const X = (x) => 30 + ((x - x0) / Math.max(1, x1 - x0)) * (c.width - 40);
  const Y = (y) => c.height - 15 - (y / ymax) * (c.height - 30);
  g.strokeStyle = "#ccc"; g.beginPath(); g.moveTo(30, Y(0)); g.lineTo(c.width - 10, Y(0)); g.stroke();
  g.fillStyle = "#555"; g.fillText(String(Math.round(ymax * 10) / 10), 2, Y(ymax) + 4); g.fillText("0", 2, Y(0) + 4);
  g.strokeStyle = "#1d3557"; g.lineWidth = 2; g.beginPath();
  points.forEach((p, i) => {
    if (i === 0) g.moveTo(X(p[0]), Y(p[1]));
    else { if (step) g.lineTo(X(p[0]), Y(points[i - 1][1])); g.lineTo(X(p[0]), Y(p[1])); }
  });
  if (step) g.lineTo(X(now), Y(points[points.length - 1][1]));
  g.stroke();
  return fig;
}

function price(p) { return p ? "$" + p.toFixed(4) + "/h" : "-"; }

async function renderService(svc) {
  const s = el("section", null, "service");
  s.dataset.service = svc.name;
  const h = el("h2", svc.name + " ");
  h.appendChild(el("span", svc.status, "status " + svc.status));
  s.appendChild(h);
  const auto = svc.autoscaling || {};
  s.appendChild(el("p", `versions ${svc.versions.join(", ")} · ready ${svc.replicas_ready}/${svc.replicas_total}` +
    ` · target ${auto.target_replicas ?? "-"} · endpoint ${svc.endpoint || "-"}`));
  s.appendChild(table(["ID", "Version", "Status", "Cloud", "Region", "Zone", "Spot", "Price"],
    svc.replicas.map((r) => [r.replica_id, r.version, el("span", r.status, "status " + r.status), r.cloud || "-",
      r.region || "-", r.zone || "-", r.use_spot ? "spot" : "on-demand", price(r.price_per_hour)])));
  const hist = await api(`/v1/dashboard/services/${encodeURIComponent(svc.name)}/history?minutes=60`);
  const charts = el("div", null, "charts");
  charts.appendChild(chart("QPS (last hour)", hist.qps, false));
  charts.appendChild(chart("Ready replicas (last hour)", hist.ready_replicas, true));
  s.appendChild(charts);
  s.appendChild(el("h3", "Recent decisions"));
  const ol = el("ol", null, "decisions");
  hist.decisions.slice().reverse().forEach((d) =>
    ol.appendChild(el("li", new Date(d.at * 1000).toISOString().slice(11, 19) + " " + d.reason)));
  if (!hist.decisions.length) ol.appendChild(el("li", "none in this range"));
  s.appendChild(ol);
  return s;
}

async function refresh() {
  const main = $("services");
  try {
    const body = await api("/v1/services");
    const sections = await Promise.all(body.services.map(renderService));
    main.replaceChildren(...sections);
    if (!sections.length) main.appendChild(el("p", "No services. `stratus up service.yaml` starts one."));
    $("updated").textContent = `log position ${body.position} · ${new Date().toLocaleTimeString()}`;
    document.body.dataset.state = "ready";
  } catch (err) {
    if (!sessionStorage.getItem(KEY)) { showLogin(String(err.message)); return; }
    main.replaceChildren(el("p", "Cannot load: " + err.message, "error"));
    document.body.dataset.state = "error";
  }
}

function showLogin(message) {
  $("login").hidden = false; $("logout").hidden = true;
  $("login-error").textContent = message || "";
  document.body.dataset.state = "login";
}

function start() {
  takeTokenFromFragment();
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, $("token").value.trim());
    $("token").value = "";
    $("login").hidden = true; $("logout").hidden = false;
    refresh();
  });
  $("logout").addEventListener("click", () => { sessionStorage.removeItem(KEY); location.reload(); });
  if (!sessionStorage.getItem(KEY)) { showLogin(""); return; }
  $("logout").hidden = false;
  refresh();
  setInterval(() => { if (sessionStorage.getItem(KEY)) refresh(); }, 10000);
}

document.addEventListener("DOMContentLoaded", start);
