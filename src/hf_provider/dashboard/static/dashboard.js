// hf-provider dashboard: renders what the server inlined into the page (<script id="initial">: the first
// poll's answers for the default window) before anything else, so the first paint shows data; then polls
// /v1/admin/{series,stats,models,server} every few seconds. charts.js draws, panels.js holds the models table,
// the errors panel and the header's server identity. No dependencies.
// API key (server started with HFP_SERVER__API_KEY): the page and its assets load without it and then hold no
// data; every data request sends it as a bearer token. It comes from the login form or once from the URL
// fragment (#key=...), which is then removed from the address bar, and lives in sessionStorage only (this tab;
// never a cookie or localStorage).
"use strict";

const POLL_MS = 3000;
const NOT_OK_KEYS = NOT_OK.map(([k]) => k);

const charts = {};
for (const el of document.querySelectorAll(".chart")) charts[el.id] = new LineChart(el);

const $ = (id) => document.getElementById(id);
const perKey = (obj, suffix = "") =>
  Object.entries(obj || {}).map(([k, values]) => ({ label: `${k || "process"}${suffix}`, values }));

// One line per model: what the budget holds for it (measured weights + estimated working memory); the
// weights where that is not known. The table below the tiles splits it up.
function memoryLines(series) {
  const held = series.accounted_bytes || {}, weights = series.weight_bytes || {};
  const names = new Set([...Object.keys(held), ...Object.keys(weights)]);
  return [...names].map((m) => {
    const a = held[m] || [], w = weights[m] || [];
    const values = series.t.map((_, i) => (a[i] ? a[i] : w[i] != null ? w[i] : null));
    return { label: m, values };
  });
}

// Models biggest first: by memory held at its peak in the window, then by requests served, then by name.
function rankModels(series, memory) {
  const peak = (vals) => vals.reduce((a, v) => (v == null ? a : Math.max(a, v)), 0);
  const total = (vals) => vals.reduce((a, v) => (v == null ? a : a + v), 0);
  const mem = new Map(memory.map((l) => [l.label, peak(l.values)]));
  const served = new Map(Object.entries(series.throughput || {}).map(([m, v]) => [m, total(v)]));
  const names = new Set([...mem.keys(), ...served.keys(), ...Object.keys(series.queue_depth || {})]);
  return [...names].sort((a, b) => (mem.get(b) || 0) - (mem.get(a) || 0)
    || (served.get(b) || 0) - (served.get(a) || 0) || a.localeCompare(b));
}

function render(series, stats) {
  const t = series.t;
  const memory = memoryLines(series);
  const colors = paletteFor(rankModels(series, memory));
  const tp = groupLines(perKey(series.throughput), colors);
  if (tp.length > 1) tp.unshift({ label: "total", values: series.throughput_total, color: TOTAL_COLOR });
  charts["chart-throughput"].update(t, tp);
  charts["chart-latency"].update(t, [
    { label: "p50", values: series.latency_ms.p50, color: PALETTE[2] },
    { label: "p95", values: series.latency_ms.p95, color: PALETTE[5] },
    { label: "p99", values: series.latency_ms.p99, color: PALETTE[3] },
  ]);
  charts["chart-queue"].update(t, groupLines(perKey(series.queue_depth), colors));
  charts["chart-memory"].update(t, groupLines(memory, colors));
  charts["chart-cpu"].update(t, [{ label: "process CPU", values: series.cpu_percent }]);
  charts["chart-rss"].update(t, [
    { label: "process RSS", values: series.rss_bytes },
    { label: "system used", values: series.system_memory_used_bytes },
  ]);
  const gpu = series.gpu || {};
  const hasGpu = Object.keys(gpu.memory_used_bytes || {}).length > 0;
  for (const id of ["chart-gpu-memory", "chart-gpu-util"]) $(id).hidden = !hasGpu;
  if (hasGpu) {
    const gpuLines = (obj) => {
      const lines = perKey(obj).map((l) => ({ ...l, label: `GPU ${l.label}` }));
      return groupLines(lines, paletteFor(lines.map((l) => l.label)), "GPUs");
    };
    charts["chart-gpu-memory"].update(t, gpuLines(gpu.memory_used_bytes));
    charts["chart-gpu-util"].update(t, gpuLines(gpu.utilization_percent));
  }
  $("tile-requests").textContent = String(stats.requests);
  $("tile-throughput").textContent = fmt.rate(stats.throughput_per_s);
  // The headline counts failures of the server's making; a client sending bad requests shows beside it.
  $("tile-errors").textContent = fmt.percent(100 * stats.error_rate);
  $("tile-client-errors").textContent = fmt.percent(100 * stats.client_error_rate);
  const q = stats.latency_ms;
  $("tile-latency").textContent = `${fmt.ms(q.p50)} / ${fmt.ms(q.p95)} / ${fmt.ms(q.p99)}`;
  const sel = $("model");
  const have = new Set([...sel.options].map((o) => o.value));
  for (const m of series.models) {
    if (!have.has(m)) { const o = document.createElement("option"); o.value = m; o.textContent = m; sel.appendChild(o); }
  }
}

function renderAll(d) {
  render(d.series, d.stats);
  if (d.models !== undefined || d.modelsFailure) modelsTable.render(d.models, d.modelsFailure);
  renderErrors(d.stats, d.perModel, (d.models && d.models.models) || modelsTable.last);
  if (d.server !== undefined) serverIdentity.set(d.server);
  if (d.groups !== undefined || d.groupsFailure) renderErrorGroups(d.groups, d.groupsFailure);
  if (d.findings !== undefined) renderFindings(d.findings);
  document.body.dataset.ready = "1";
}

const KEY_ITEM = "hfp-api-key";
const keyStore = {
  get() { try { return sessionStorage.getItem(KEY_ITEM) || ""; } catch { return ""; } },
  set(v) { try { sessionStorage.setItem(KEY_ITEM, v); } catch { /* storage off: the key lasts this page */ } },
  clear() { try { sessionStorage.removeItem(KEY_ITEM); } catch { /* nothing stored */ } },
};
let apiKey = keyStore.get();

// #key=... : taken once, then gone from the address bar (and from history) so it is not shared by accident.
(function keyFromFragment() {
  if (!location.hash) return;
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (!fragment.has("key")) return;
  apiKey = fragment.get("key") || "";
  if (apiKey) keyStore.set(apiKey);
  fragment.delete("key");
  const rest = fragment.toString();
  history.replaceState(history.state, "", `${location.pathname}${location.search}${rest ? `#${rest}` : ""}`);
})();

class AuthError extends Error {}

// GET by default; an error answer's own message ({"error": {"message": ...}}) becomes the Error's message.
async function api(path, { method = "GET" } = {}) {
  const headers = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
  const r = await fetch(path, { method, headers, credentials: "omit", cache: "no-store" });
  if (r.status === 401) throw new AuthError(apiKey ? "The API key was refused." : "This server needs an API key.");
  if (!r.ok) {
    let message = `HTTP ${r.status}`;
    try {
      const body = await r.json();
      if (body && body.error && body.error.message) message = `${body.error.message} (HTTP ${r.status})`;
    } catch { /* not JSON: the status says it */ }
    throw new Error(message);
  }
  return r.json();
}

function showLogin(message) {
  $("login-message").textContent = message;
  const form = $("login");
  if (form.hidden) { form.hidden = false; $("api-key").focus(); }
  $("status").textContent = "API key needed";
  $("status").classList.add("error");
}

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("api-key");
  apiKey = input.value.trim();
  input.value = "";
  if (apiKey) keyStore.set(apiKey); else keyStore.clear();
  $("login").hidden = true;
  poll();
});

function settled(result) {
  if (result.status === "fulfilled") return [result.value, null];
  if (result.reason instanceof AuthError) throw result.reason;
  return [undefined, result.reason.message];
}

// Per-model stats only when the window has non-ok outcomes at all (most polls: none, no extra requests).
async function statsPerModel(stats, names, qs, model) {
  if (model) return { [model]: stats };
  if (!NOT_OK_KEYS.some((k) => stats[k])) return {};
  try {
    const all = await Promise.all(names.map((n) => api(`/v1/admin/stats?${qs}&model=${encodeURIComponent(n)}`)));
    return Object.fromEntries(names.map((n, i) => [n, all[i]]));
  } catch (err) {
    if (err instanceof AuthError) throw err;
    return null;  // the panel shows the totals
  }
}

async function refreshModels() {
  try {
    modelsTable.render(await api("/v1/admin/models"));
  } catch (err) {
    if (err instanceof AuthError) showLogin(err.message);
  }
}

let inFlight = false;
async function poll() {
  if (inFlight || !$("login").hidden) return;  // no polling behind the login form: it would only get 401s
  inFlight = true;
  const window_ = $("window").value, model = $("model").value;
  const qs = `window=${encodeURIComponent(window_)}`;
  const mq = model ? `&model=${encodeURIComponent(model)}` : "";
  try {
    const [results, series, stats] = await Promise.all([
      Promise.allSettled([
        api("/v1/admin/models"),
        api("/v1/admin/server"),
        api(`/v1/admin/errors?since=${encodeURIComponent(`${window_}s`)}${mq}`),
        api("/v1/admin/findings"),
      ]),
      api(`/v1/admin/series?${qs}${mq}`),
      api(`/v1/admin/stats?${qs}${mq}`),
    ]);
    const [models, modelsFailure] = settled(results[0]);
    const [server] = settled(results[1]);
    const [reports, reportsFailure] = settled(results[2]);
    const [findings] = settled(results[3]);  // absent (a server without history): no findings shown
    const names = [...new Set([...series.models, ...((models && models.models) || []).map((m) => m.name)])];
    const perModel = await statsPerModel(stats, names, qs, model);
    renderAll({
      series, stats, models, modelsFailure, server: server === undefined ? null : server, perModel,
      groups: reports && reports.groups, groupsFailure: reportsFailure,
      findings: (findings && findings.findings) || [],
    });
    $("status").textContent = `updated ${new Date().toLocaleTimeString([], { hour12: false })}`;
    $("status").classList.remove("error");
  } catch (err) {
    if (err instanceof AuthError) {
      if (apiKey) { apiKey = ""; keyStore.clear(); }  // a refused key is not sent again
      showLogin(err.message);
    } else {
      $("status").textContent = `update failed: ${err.message}`;
      $("status").classList.add("error");
    }
  } finally {
    inFlight = false;
  }
}

// The server's answers for the default window, in the page itself: drawn now, before any request.
function initialData() {
  const el = $("initial");
  if (!el) return null;
  try { return JSON.parse(el.textContent); } catch { return null; }
}

const initial = initialData();
if (initial) {
  renderAll({
    series: initial.series,
    stats: initial.stats,
    models: initial.models,
    server: initial.server,
    perModel: initial.model_stats,
    groups: initial.groups || undefined,
    findings: initial.findings || undefined,
  });
  const asOf = new Date(initial.series.now * 1000).toLocaleTimeString([], { hour12: false });
  $("status").textContent = `as of ${asOf}`;
}
$("window").addEventListener("change", poll);
$("model").addEventListener("change", poll);
window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.draw()));
setInterval(() => { serverIdentity.paint(); poll(); }, POLL_MS);
// Without the page's own data (a server with an API key), or when the browser restored other choices than
// the default window and all models, the first poll goes now.
if (!initial || $("window").value !== String(initial.window) || $("model").value) poll();
