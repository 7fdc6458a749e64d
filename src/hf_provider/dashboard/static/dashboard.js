// hf-provider dashboard: polls /v1/admin/series and /v1/admin/stats and draws canvas line charts.
// No dependencies. Each chart element carries data-points = the number of points it drew (tests read it).
// API key (server started with HFP_SERVER__API_KEY): the page and its assets load without it; every data request
// sends it as a bearer token. It comes from the login form or once from the URL fragment (#key=...), which is
// then removed from the address bar, and lives in sessionStorage only (this tab; never a cookie or localStorage).
"use strict";

const POLL_MS = 3000;
const COLORS = ["#88c0d0", "#a3be8c", "#ebcb8b", "#d08770", "#b48ead", "#bf616a", "#5e81ac", "#8fbcbb"];

const fmt = {
  bytes(v) {
    if (v == null) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${v.toFixed(v >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
  },
  ms(v) { return v == null ? "–" : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(v < 10 ? 2 : 1)} ms`; },
  percent(v) { return v == null ? "–" : `${v.toFixed(1)}%`; },
  rate(v) { return v == null ? "–" : `${v < 10 ? v.toFixed(2) : v.toFixed(1)}/s`; },
  count(v) { return v == null ? "–" : `${Math.round(v * 10) / 10}`; },
};

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function timeLabel(ts, span) {
  const d = new Date(ts * 1000);
  const hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  if (span > 2 * 86400) return `${d.getMonth() + 1}/${d.getDate()} ${hm}`;
  if (span <= 600) return d.toLocaleTimeString([], { hour12: false });
  return hm;
}

class LineChart {
  constructor(el) {
    this.el = el;
    this.unit = el.dataset.unit || "count";
    el.innerHTML = `<h2></h2><canvas></canvas><div class="legend"></div><div class="empty">no data yet</div>
      <div class="tip"></div>`;
    el.querySelector("h2").textContent = el.dataset.title || el.id;
    this.canvas = el.querySelector("canvas");
    this.legend = el.querySelector(".legend");
    this.empty = el.querySelector(".empty");
    this.tip = el.querySelector(".tip");
    this.t = [];
    this.lines = [];
    this.canvas.addEventListener("mousemove", (e) => this.hover(e));
    this.canvas.addEventListener("mouseleave", () => { this.tip.style.display = "none"; });
  }

  update(t, lines) {
    this.t = t;
    this.lines = lines.filter((l) => l.values && l.values.some((v) => v != null));
    let points = 0;
    for (const l of this.lines) for (const v of l.values) if (v != null) points++;
    this.el.dataset.points = String(points);
    this.empty.style.display = points ? "none" : "block";
    this.legend.innerHTML = "";
    this.lines.forEach((l, i) => {
      l.color = l.color || COLORS[i % COLORS.length];
      const s = document.createElement("span");
      s.innerHTML = `<i style="background:${l.color}"></i>`;
      s.appendChild(document.createTextNode(l.label));
      this.legend.appendChild(s);
    });
    this.draw();
  }

  geometry() {
    const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    return { w, h, left: 64, right: 10, top: 8, bottom: 22 };
  }

  draw() {
    const dpr = window.devicePixelRatio || 1;
    const g = this.geometry();
    this.canvas.width = Math.max(1, Math.round(g.w * dpr));
    this.canvas.height = Math.max(1, Math.round(g.h * dpr));
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, g.w, g.h);
    const n = this.t.length;
    if (!n) return;
    let max = 0;
    for (const l of this.lines) for (const v of l.values) if (v != null && v > max) max = v;
    this.ymax = niceMax(max);
    const pw = g.w - g.left - g.right, ph = g.h - g.top - g.bottom;
    const x = (i) => g.left + (n === 1 ? pw / 2 : (i / (n - 1)) * pw);
    const y = (v) => g.top + ph - (v / this.ymax) * ph;
    this.x = x;
    // grid and axes
    ctx.strokeStyle = "#2a3440"; ctx.fillStyle = "#8a96a3"; ctx.lineWidth = 1;
    ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (let k = 0; k <= 4; k++) {
      const v = (this.ymax * k) / 4, yy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(g.left, yy); ctx.lineTo(g.w - g.right, yy); ctx.stroke();
      ctx.fillText(fmt[this.unit](v), g.left - 6, yy);
    }
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    const span = this.t[n - 1] - this.t[0];
    const ticks = Math.min(6, n);
    for (let k = 0; k < ticks; k++) {
      const i = Math.round((k * (n - 1)) / Math.max(1, ticks - 1));
      ctx.textAlign = k === ticks - 1 && ticks > 1 ? "right" : "center";
      ctx.fillText(timeLabel(this.t[i], span), x(i), g.h - g.bottom + 6);
    }
    // lines: null breaks a line; a lone point is drawn as a dot
    for (const l of this.lines) {
      ctx.strokeStyle = l.color; ctx.fillStyle = l.color; ctx.lineWidth = 1.8;
      ctx.beginPath();
      let open = false;
      l.values.forEach((v, i) => {
        if (v == null) { open = false; return; }
        const prev = i > 0 ? l.values[i - 1] : null, next = i < n - 1 ? l.values[i + 1] : null;
        if (prev == null && next == null) {
          ctx.moveTo(x(i) + 2, y(v)); ctx.arc(x(i), y(v), 2, 0, 2 * Math.PI); ctx.moveTo(x(i), y(v));
        }
        if (open) ctx.lineTo(x(i), y(v)); else ctx.moveTo(x(i), y(v));
        open = true;
      });
      ctx.stroke();
    }
  }

  hover(e) {
    const n = this.t.length;
    if (!n || !this.lines.length) return;
    const g = this.geometry();
    const rect = this.canvas.getBoundingClientRect();
    const px = e.clientX - rect.left;
    const i = Math.max(0, Math.min(n - 1, Math.round(((px - g.left) / (g.w - g.left - g.right)) * (n - 1))));
    const rows = this.lines.map((l) => `${l.label}: ${fmt[this.unit](l.values[i])}`);
    this.tip.textContent = "";
    const head = document.createElement("div");
    head.textContent = new Date(this.t[i] * 1000).toLocaleString();
    this.tip.appendChild(head);
    for (const r of rows) { const d = document.createElement("div"); d.textContent = r; this.tip.appendChild(d); }
    this.tip.style.display = "block";
    this.tip.style.left = `${Math.min(px + 12, g.w - 160)}px`;
    this.tip.style.top = "30px";
  }
}

const charts = {};
for (const el of document.querySelectorAll(".chart")) charts[el.id] = new LineChart(el);

const $ = (id) => document.getElementById(id);
const perKey = (obj, suffix = "") =>
  Object.entries(obj || {}).map(([k, values]) => ({ label: `${k || "process"}${suffix}`, values }));

function render(series, stats) {
  const t = series.t;
  const tp = perKey(series.throughput);
  if (tp.length > 1) tp.unshift({ label: "total", values: series.throughput_total, color: "#eceff4" });
  charts["chart-throughput"].update(t, tp);
  charts["chart-latency"].update(t, [
    { label: "p50", values: series.latency_ms.p50, color: "#a3be8c" },
    { label: "p95", values: series.latency_ms.p95, color: "#ebcb8b" },
    { label: "p99", values: series.latency_ms.p99, color: "#bf616a" },
  ]);
  charts["chart-queue"].update(t, perKey(series.queue_depth));
  const memory = [];
  const models = new Set([...Object.keys(series.weight_bytes), ...Object.keys(series.accounted_bytes)]);
  for (const m of models) {
    if (series.accounted_bytes[m]) memory.push({ label: `${m} accounted (budget)`, values: series.accounted_bytes[m] });
    if (series.weight_bytes[m]) memory.push({ label: `${m} weights`, values: series.weight_bytes[m] });
    if (series.peak_working_bytes[m]) memory.push({ label: `${m} peak working`, values: series.peak_working_bytes[m] });
  }
  charts["chart-memory"].update(t, memory);
  charts["chart-cpu"].update(t, [{ label: "process CPU", values: series.cpu_percent }]);
  charts["chart-rss"].update(t, [
    { label: "process RSS", values: series.rss_bytes },
    { label: "system used", values: series.system_memory_used_bytes },
  ]);
  const gpu = series.gpu || {};
  const hasGpu = Object.keys(gpu.memory_used_bytes || {}).length > 0;
  for (const id of ["chart-gpu-memory", "chart-gpu-util"]) $(id).hidden = !hasGpu;
  if (hasGpu) {
    charts["chart-gpu-memory"].update(t, perKey(gpu.memory_used_bytes).map((l) => ({ ...l, label: `GPU ${l.label}` })));
    charts["chart-gpu-util"].update(t, perKey(gpu.utilization_percent).map((l) => ({ ...l, label: `GPU ${l.label}` })));
  }
  $("tile-requests").textContent = String(stats.requests);
  $("tile-throughput").textContent = fmt.rate(stats.throughput_per_s);
  $("tile-errors").textContent = fmt.percent(100 * stats.error_rate);
  const q = stats.latency_ms;
  $("tile-latency").textContent = `${fmt.ms(q.p50)} / ${fmt.ms(q.p95)} / ${fmt.ms(q.p99)}`;
  const sel = $("model");
  const have = new Set([...sel.options].map((o) => o.value));
  for (const m of series.models) {
    if (!have.has(m)) { const o = document.createElement("option"); o.value = m; o.textContent = m; sel.appendChild(o); }
  }
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

async function api(path) {
  const headers = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
  const r = await fetch(path, { headers, credentials: "omit", cache: "no-store" });
  if (r.status === 401) throw new AuthError(apiKey ? "The API key was refused." : "This server needs an API key.");
  if (!r.ok) throw new Error(`HTTP ${r.status}`);
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

let inFlight = false;
async function poll() {
  if (inFlight || !$("login").hidden) return;  // no polling behind the login form: it would only get 401s
  inFlight = true;
  const window_ = $("window").value, model = $("model").value;
  const qs = `window=${encodeURIComponent(window_)}${model ? `&model=${encodeURIComponent(model)}` : ""}`;
  try {
    const [series, stats] = await Promise.all([api(`/v1/admin/series?${qs}`), api(`/v1/admin/stats?${qs}`)]);
    render(series, stats);
    $("status").textContent = `updated ${new Date().toLocaleTimeString([], { hour12: false })}`;
    $("status").classList.remove("error");
    document.body.dataset.ready = "1";
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

$("window").addEventListener("change", poll);
$("model").addEventListener("change", poll);
window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.draw()));
poll();
setInterval(poll, POLL_MS);
