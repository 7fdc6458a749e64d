// hf-provider dashboard: the models table (with load / unload / pin / unpin), the errors panel and the
// server's identity in the header. Rows are kept between polls (keyed by model name) and updated in place,
// so a button is never replaced under the pointer. Each row carries data-model, data-state and data-pinned.
"use strict";

const NOT_OK = [
  ["errors", "Errors"],
  ["client_errors", "Client errors (4xx)"],
  ["timed_out", "Timed out"],
  ["rejected", "Rejected"],
  ["cancelled", "Cancelled"],
];

const modelsTable = {
  rows: new Map(),  // name -> { tr, note, cells, buttons }
  pending: new Map(),  // name -> the action under way
  notes: new Map(),  // name -> { text, error }: the outcome of the last action, until the next one
  last: [],

  render(body, failure) {
    const message = document.getElementById("models-message");
    if (failure) {
      message.hidden = false;
      message.textContent = `model list unavailable: ${failure}`;
      return;
    }
    const models = (body && body.models) || [];
    this.last = models;
    message.hidden = models.length > 0;
    message.textContent = models.length ? "" : "no models configured";
    const tbody = document.querySelector("#models tbody");
    const seen = new Set();
    for (const m of models) {
      seen.add(m.name);
      let row = this.rows.get(m.name);
      if (!row) { row = this.makeRow(m.name); this.rows.set(m.name, row); }
      tbody.appendChild(row.tr);  // appending an attached node moves it: rows follow the server's order
      tbody.appendChild(row.note);
      this.fill(row, m);
    }
    for (const [name, row] of this.rows) {
      if (!seen.has(name)) { row.tr.remove(); row.note.remove(); this.rows.delete(name); }
    }
  },

  makeRow(name) {
    const tr = document.createElement("tr");
    tr.dataset.model = name;
    const cells = {};
    for (const k of ["name", "state", "revision", "weights", "working", "budget", "queued", "in_flight", "pinned"]) {
      cells[k] = document.createElement("td");
      cells[k].className = k;
      tr.appendChild(cells[k]);
    }
    cells.name.textContent = name;
    cells.name.title = name;
    const actions = document.createElement("td");
    actions.className = "actions";
    const buttons = {};
    for (const action of ["load", "unload", "pin"]) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.action = action;
      b.addEventListener("click", () => this.act(name, b.dataset.action));
      buttons[action] = b;
      actions.appendChild(b);
    }
    buttons.load.textContent = "Load";
    buttons.unload.textContent = "Unload";
    tr.appendChild(actions);
    const note = document.createElement("tr");
    note.className = "note";
    note.dataset.model = name;
    const td = document.createElement("td");
    td.colSpan = 10;
    note.appendChild(td);
    return { tr, note, cells, buttons };
  },

  fill(row, m) {
    const { tr, note, cells, buttons } = row;
    const state = m.state || "unknown";
    tr.dataset.state = state;
    tr.dataset.pinned = String(Boolean(m.pinned));
    // "failed": not serving because of an error (its last load, or a fatal device error); the reason on hover
    cells.state.textContent = state;
    cells.state.className = `state ${state === "failed" ? "bad" : state}`;
    cells.state.title = state === "failed" ? m.error || "" : "";
    const weightsIn = m.weight_bytes != null;
    const commit = m.commit ? String(m.commit).slice(0, 8) : "";
    const revision = m.revision || "";
    cells.revision.textContent = commit && commit !== revision ? `${revision || "?"} @ ${commit}` : revision || "–";
    cells.revision.title = m.commit || "";
    cells.weights.textContent = fmt.bytes(m.weight_bytes);
    cells.working.textContent = `${fmt.bytes(m.working_bytes_peak)} / ${fmt.bytes(m.working_bytes_estimated)}`;
    cells.budget.textContent = m.accounted_bytes ? fmt.bytes(m.accounted_bytes) : "–";
    cells.budget.title = m.estimated_bytes ? `admission estimate: ${fmt.bytes(m.estimated_bytes)}` : "";
    cells.queued.textContent = m.queued == null ? "–" : String(m.queued);
    cells.in_flight.textContent = m.in_flight == null ? "–" : String(m.in_flight);
    cells.pinned.textContent = m.pinned ? "pinned" : "";
    const busy = this.pending.has(m.name);
    // a failed load is retried by Load; a model failed with its weights in is unloaded first
    buttons.load.disabled = busy || !(state === "unloaded" || (state === "failed" && !weightsIn));
    buttons.unload.disabled = busy || !(state === "ready" || (state === "failed" && weightsIn));
    buttons.pin.dataset.action = m.pinned ? "unpin" : "pin";
    buttons.pin.textContent = m.pinned ? "Unpin" : "Pin";
    buttons.pin.disabled = busy || m.pinned == null;
    const n = busy ? { text: `${this.pending.get(m.name)}…`, error: false } : this.notes.get(m.name);
    note.hidden = !n;
    note.firstChild.textContent = n ? n.text : "";
    note.classList.toggle("error", Boolean(n && n.error));
  },

  async act(name, action) {
    if (this.pending.has(name)) return;
    this.pending.set(name, action);
    this.notes.delete(name);
    this.render({ models: this.last });
    try {
      const one = await api(`/v1/admin/models/${name.split("/").map(encodeURIComponent).join("/")}/${action}`,
        { method: "POST" });
      this.last = this.last.map((m) => (m.name === name ? { ...m, ...one } : m));
    } catch (err) {
      if (err instanceof AuthError) { showLogin(err.message); return; }
      this.notes.set(name, { text: `${action} failed: ${err.message}`, error: true });
    } finally {
      this.pending.delete(name);
      this.render({ models: this.last });
    }
    refreshModels();
  },
};

// Non-ok outcomes per model in the window, and each model's last load error. `perModel` maps a model name to
// its /v1/admin/stats (null when only the totals are known); the totals cover names no model answers to.
function renderErrors(stats, perModel, models) {
  const rows = [];
  const loadErrors = new Map((models || []).filter((m) => m.error).map((m) => [m.name, m.error]));
  const names = [...new Set([...Object.keys(perModel || {}), ...loadErrors.keys()])].sort();
  const sum = Object.fromEntries(NOT_OK.map(([k]) => [k, 0]));
  for (const name of names) {
    const s = (perModel || {})[name] || {};
    for (const [k] of NOT_OK) sum[k] += s[k] || 0;
    if (NOT_OK.some(([k]) => s[k]) || loadErrors.has(name)) rows.push({ name, s, loadError: loadErrors.get(name) });
  }
  if (stats) {
    const rest = Object.fromEntries(NOT_OK.map(([k]) => [k, Math.max(0, (stats[k] || 0) - sum[k])]));
    if (NOT_OK.some(([k]) => rest[k])) rows.push({ name: perModel ? "other model names" : "all models", s: rest });
  }
  const box = document.getElementById("errors");
  box.textContent = "";
  if (!rows.length) {
    const p = document.createElement("p");
    p.className = "muted empty-errors";
    p.textContent = "no errors in this window";
    box.appendChild(p);
    return;
  }
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const h of ["Model", ...NOT_OK.map(([, label]) => label), "Last load error"]) {
    const th = document.createElement("th");
    th.textContent = h;
    head.appendChild(th);
  }
  const body = table.createTBody();
  for (const r of rows) {
    const tr = body.insertRow();
    tr.dataset.model = r.name;
    tr.insertCell().textContent = r.name;
    for (const [k] of NOT_OK) {
      const td = tr.insertCell();
      td.className = `num ${k}`;
      td.textContent = r.s[k] ? String(r.s[k]) : "";
    }
    const td = tr.insertCell();
    td.className = "load-error";
    td.textContent = r.loadError || "";
  }
  box.appendChild(table);
}

// Grouped error reports (GET /v1/admin/errors) seen in the window, most recent first: what failed, where, how
// often. Messages are the reports' own, redacted by the server; the last 20 groups are shown.
function renderErrorGroups(groups, failure) {
  const box = document.getElementById("error-groups");
  box.textContent = "";
  if (failure || !groups || !groups.length) {
    const p = document.createElement("p");
    p.className = "muted empty-groups";
    p.textContent = failure ? `error reports unavailable: ${failure}` : "no error reports in this window";
    box.appendChild(p);
    return;
  }
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const h of ["Class", "Model", "Phase", "Count", "Last seen", "Message"]) {
    const th = document.createElement("th");
    th.textContent = h;
    head.appendChild(th);
  }
  const body = table.createTBody();
  const now = Date.now() / 1000;
  for (const g of groups.slice(0, 20)) {
    const tr = body.insertRow();
    tr.dataset.fingerprint = g.fingerprint;
    tr.dataset.class = g.error_class;
    tr.insertCell().textContent = g.error_class;
    tr.insertCell().textContent = g.model || "–";
    tr.insertCell().textContent = g.phase || "–";
    const count = tr.insertCell();
    count.className = "num count";
    count.textContent = String(g.count);
    const seen = tr.insertCell();
    seen.textContent = `${fmt.duration(Math.max(0, now - g.last_seen))} ago`;
    seen.title = new Date(g.last_seen * 1000).toLocaleString();
    const msg = tr.insertCell();
    msg.className = "load-error message";
    msg.textContent = g.message;
  }
  box.appendChild(table);
}

// Regressions and anomalies the server's monitor found (GET /v1/admin/findings): above everything, or hidden.
function renderFindings(findings) {
  const box = document.getElementById("findings");
  box.textContent = "";
  box.hidden = !findings.length;
  for (const f of findings) {
    const div = document.createElement("div");
    div.className = "finding";
    div.dataset.model = f.model;
    div.dataset.kind = f.kind;
    div.textContent = f.message;  // text, never markup: model names come from the server's config
    box.appendChild(div);
  }
}

// "127.0.0.1:8000 · v0.1.0 · up 3 h 12 min · pid 1234"; the uptime goes on from when the answer came.
const serverIdentity = {
  info: null,
  at: 0,
  set(info) { this.info = info; this.at = performance.now(); this.paint(); },
  paint() {
    const el = document.getElementById("server");
    const s = this.info;
    if (!s) { el.textContent = ""; return; }
    const host = String(s.host).includes(":") ? `[${s.host}]` : s.host;
    const up = s.uptime_s == null ? null : s.uptime_s + (performance.now() - this.at) / 1000;
    const version = /^\d/.test(s.version || "") ? `v${s.version}` : `version ${s.version || "unknown"}`;
    el.textContent = [`${host}:${s.port}`, version, `up ${fmt.duration(up)}`, `pid ${s.pid}`].join(" · ");
    const started = s.started_at ? `started ${new Date(s.started_at * 1000).toLocaleString()}` : "";
    el.title = [started, s.home ? `state folder: ${s.home}` : ""].filter(Boolean).join("\n");
  },
};
