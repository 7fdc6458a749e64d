// hf-provider dashboard: number formats and canvas line charts. No dependencies.
// Each chart element carries data-points = the number of points it drew (tests read it).
"use strict";

// Six colours told apart on the dark background, one per model on every chart (paletteFor); the models past
// them share one grey "other" line, so a legend never lists more than seven.
const PALETTE = ["#4e9fe5", "#f2a541", "#5cc87a", "#e5616b", "#b48ead", "#e6d35c"];
const OTHER_COLOR = "#8a96a3";
const TOTAL_COLOR = "#eceff4";

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
  duration(s) {
    if (s == null) return "–";
    s = Math.max(0, Math.floor(s));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60) % 60, h = Math.floor(s / 3600) % 24, d = Math.floor(s / 86400);
    if (d) return `${d} d ${h} h`;
    return h ? `${h} h ${m} min` : `${m} min`;
  },
};

// name -> colour for the first six of `ranked` (biggest first): the same model has the same colour everywhere.
function paletteFor(ranked) {
  return new Map(ranked.slice(0, PALETTE.length).map((name, i) => [name, PALETTE[i]]));
}

// The lines of one chart whose label has a colour in `colors`, in that order; the others summed bucket by
// bucket into one "other" line (a single one keeps its name), so twenty models still make a legend one can read.
function groupLines(lines, colors, what = "models") {
  const live = lines.filter((l) => l.values && l.values.some((v) => v != null));
  const order = [...colors.keys()];
  const shown = live.filter((l) => colors.has(l.label));
  shown.sort((a, b) => order.indexOf(a.label) - order.indexOf(b.label));
  const out = shown.map((l) => ({ ...l, color: colors.get(l.label) }));
  const rest = live.filter((l) => !colors.has(l.label));
  if (rest.length === 1) out.push({ ...rest[0], color: OTHER_COLOR });
  if (rest.length > 1) {
    const values = rest[0].values.map((_, i) => {
      let sum = null;
      for (const l of rest) if (l.values[i] != null) sum = (sum || 0) + l.values[i];
      return sum;
    });
    out.push({ label: `other (${rest.length} ${what})`, values, color: OTHER_COLOR });
  }
  return out;
}

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
      l.color = l.color || PALETTE[i % PALETTE.length];
      const s = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = l.color;
      s.appendChild(swatch);
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
