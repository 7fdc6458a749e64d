"""`hfp report --html`: one self-contained page (inline CSS and SVG, no script, nothing fetched) summarising a server
over a period: traffic, latency percentiles, errors by group, memory, findings and SLO status, with charts.

Pure: a dict of what the admin APIs answered in, a string out (cli/report.py gathers the dict). The charts are SVG
drawn here: a line chart is forty lines, a plotting library would be a large dependency for it. Every text that
came from the server (model names, error messages, which the reporter has already redacted) is HTML-escaped.

"errors" everywhere on the page is the share of requests that failed by the server's doing (errors, time-outs,
refusals: `error_rate`); client errors (4xx, the request's own fault: `client_error_rate`) are shown beside it.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from hf_provider.units import format_duration, format_size

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777")
# The dashboard's percentile colours (dashboard/static/dashboard.js: PALETTE[2], [5], [3] of charts.js), so a p99
# is red on both pages
PERCENTILE_COLOURS = {"p50": "#5cc87a", "p95": "#e6d35c", "p99": "#e5616b"}
W, H, PAD_L, PAD_R, PAD_B = 560, 210, 56, 12, 28
LEGEND_CHARS, CHAR_PX = 60, 6  # a legend name is cut past 60 characters; 10px text is about 6px a character
MAX_LINES = 7

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#111827;margin:24px auto;max-width:1180px;
background:#f9fafb;padding:0 16px}
h1{font-size:22px;margin:0}h2{font-size:16px;margin:24px 0 8px}.sub{color:#6b7280;margin:2px 0 16px}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;
padding:10px 14px;min-width:120px}.card b{display:block;font-size:20px}.card span{color:#6b7280;font-size:12px}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:12px}
.chart{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:8px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e5e7eb}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #f3f4f6;font-size:13px}th{background:#f3f4f6}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.finding{background:#fef3c7;border-left:4px solid #d97706;padding:8px 12px;margin:6px 0;border-radius:4px}
.none{color:#6b7280}.ok{color:#15803d;font-weight:600}.at_risk{color:#b45309;font-weight:600}
.breached{color:#b91c1c;font-weight:600}.no_data{color:#6b7280}
.bar{display:inline-block;height:8px;background:#e5e7eb;width:120px;border-radius:4px;vertical-align:middle}
.bar i{display:block;height:8px;border-radius:4px}
"""


def render(data: dict[str, Any]) -> str:
    e = html.escape
    stats = data.get("stats") or {}
    lat = stats.get("latency_ms") or {}
    since = float(data.get("since_s") or 0)
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(data.get("generated") or time.time()))
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>hf-provider report · {e(str(data.get('server', '')))}</title><style>{CSS}</style></head><body>",
        "<h1>hf-provider report</h1>",
        f"<p class=sub>{e(str(data.get('server', '')))} · last {e(format_duration(since))} · generated {generated}</p>",
        "<div class=cards>",
        _card("requests", f"{stats.get('requests', 0):,}"),
        _card("ok per second", _num(stats.get("throughput_per_s"), 2)),
        _card("errors (server failures)", _pct(stats.get("error_rate"))),
        _card("client errors (4xx)", _pct(stats.get("client_error_rate"))),
        _card("p50 latency", _ms(lat.get("p50"))),
        _card("p95 latency", _ms(lat.get("p95"))),
        _card("p99 latency", _ms(lat.get("p99"))),
        "</div>",
        "<h2>Findings</h2>",
        _findings(data.get("findings") or []),
        "<h2>SLO status</h2>",
        _slo(data.get("slo") or {}),
        "<h2>Over time</h2>",
        _charts(data.get("series") or {}),
        "<h2>Models</h2>",
        _models(data.get("model_stats") or {}),
        "<h2>Errors by group</h2>",
        _errors(data.get("groups") or []),
        "</body></html>",
    ]
    return "".join(parts)


# -- sections ---------------------------------------------------------------------------------------------------


def _card(label: str, value: str) -> str:
    return f"<div class=card><b>{html.escape(value)}</b><span>{html.escape(label)}</span></div>"


def _findings(findings: Sequence[dict[str, Any]]) -> str:
    if not findings:
        return "<p class=none>No findings: no model's latency, error rate or throughput moved against its baseline.</p>"
    return "".join(
        f"<div class=finding data-kind={html.escape(str(f.get('kind')))}>{html.escape(str(f.get('message', '')))}</div>"
        for f in findings
    )


def _slo(slo: dict[str, Any]) -> str:
    models = slo.get("models") or {}
    rows = []
    for name, m in sorted(models.items()):
        objectives = m.get("objectives") or []
        if not objectives:
            rows.append(
                f"<tr><td>{html.escape(name)}</td><td colspan=5 class=none>no objective set</td></tr>"
            )
            continue
        for o in objectives:
            left = o.get("budget_remaining")
            width = 0 if left is None else max(0.0, min(1.0, float(left))) * 100
            colour = (
                "#16a34a" if o["status"] == "ok" else "#d97706" if o["status"] == "at_risk" else "#dc2626"
            )
            target = _ms(o["target"]) if o["objective"] == "latency" else _pct(o["target"])
            observed = _ms(o.get("observed")) if o["objective"] == "latency" else _pct(o.get("observed"))
            label = "p95 latency" if o["objective"] == "latency" else "error rate"
            rows.append(
                f"<tr><td>{html.escape(name)}</td><td>{label}</td><td class=n>{target}</td><td class=n>{observed}</td>"
                f"<td><span class=bar><i style='width:{width:.0f}%;background:{colour}'></i></span> "
                f"{_pct(left)}</td><td class={html.escape(o['status'])}>{html.escape(o['status'])}</td></tr>"
            )
    if not rows:
        return "<p class=none>No models.</p>"
    cols = ("model", "objective", "target", "observed", "budget left", "status")
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>"
    return f"<table class=slo>{head}{''.join(rows)}</table>"


def _charts(s: dict[str, Any]) -> str:
    t = s.get("t") or []
    if not t:
        return "<p class=none>No history in this period.</p>"
    lat = s.get("latency_ms") or {}
    memory = {
        "resident (RSS)": s.get("rss_bytes") or [],
        "system used": s.get("system_memory_used_bytes") or [],
    }
    memory.update({f"{m} weights": v for m, v in (s.get("weight_bytes") or {}).items()})
    err = {  # legends are cut at 18 characters
        label: [None if v is None else v * 100 for v in s.get(key) or []]
        for label, key in (("errors", "error_rate"), ("4xx client errors", "client_error_rate"))
    }
    charts = [
        line_chart("Throughput (ok requests/s)", t, s.get("throughput") or {}, lambda v: _num(v, 2)),
        line_chart(
            "Latency (ms)",
            t,
            {k: lat.get(k) or [] for k in PERCENTILE_COLOURS},
            _axis_ms,
            colours=PERCENTILE_COLOURS,
        ),
        line_chart("Errors (% of requests)", t, err, lambda v: f"{v:.1f}%"),
        line_chart("Memory", t, memory, format_size),
    ]
    return "<div class=grid>" + "".join(f"<div class=chart>{c}</div>" for c in charts) + "</div>"


def _models(per: dict[str, Any]) -> str:
    if not per:
        return "<p class=none>No requests in this period.</p>"
    head = (
        "<tr><th>model</th><th>requests</th><th>ok/s</th><th>errors</th><th>4xx</th><th>p50</th><th>p95</th>"
        "<th>p99</th><th>time-outs</th><th>refused</th></tr>"
    )
    rows = []
    for name, st in sorted(per.items()):
        q = st.get("latency_ms") or {}
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td class=n>{st.get('requests', 0):,}</td>"
            f"<td class=n>{_num(st.get('throughput_per_s'), 2)}</td><td class=n>{_pct(st.get('error_rate'))}</td>"
            f"<td class=n>{_pct(st.get('client_error_rate'))}</td>"
            + "".join(f"<td class=n>{_ms(q.get(k))}</td>" for k in ("p50", "p95", "p99"))
            + f"<td class=n>{st.get('timed_out', 0):,}</td><td class=n>{st.get('rejected', 0):,}</td></tr>"
        )
    return f"<table class=models>{head}{''.join(rows)}</table>"


def _errors(groups: Sequence[dict[str, Any]]) -> str:
    if not groups:
        return "<p class=none>No errors reported in this period.</p>"
    cols = ("class", "model", "phase", "message (redacted)", "count", "last seen")
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>"
    rows = [
        f"<tr><td>{html.escape(str(g.get('error_class', '')))}</td><td>{html.escape(str(g.get('model') or '-'))}</td>"
        f"<td>{html.escape(str(g.get('phase') or '-'))}</td><td>{html.escape(str(g.get('message', ''))[:300])}</td>"
        f"<td class=n>{int(g.get('count') or 0):,}</td>"
        f"<td>{time.strftime('%m-%d %H:%M', time.gmtime(g.get('last_seen') or 0))}</td></tr>"
        for g in sorted(groups, key=lambda g: -(g.get("count") or 0))[:20]
    ]
    return f"<table class=errors>{head}{''.join(rows)}</table>"


# -- charts -----------------------------------------------------------------------------------------------------


def line_chart(
    title: str,
    t: Sequence[float],
    series: dict[str, Sequence[float | None]],
    fmt: Callable[[float], str],
    colours: dict[str, str] | None = None,
) -> str:
    """An SVG line chart: one polyline per series (broken at gaps), y from 0, four grid lines, a legend.
    `colours`: series name -> colour, for the series whose colour means something (percentiles)."""
    e = html.escape
    shown = list(series.items())[:MAX_LINES]
    values = [v for _, vs in shown for v in vs if v is not None and math.isfinite(v)]
    top = _nice(max(values) if values else 1.0)
    t0, t1 = (t[0], t[-1]) if len(t) > 1 else (0.0, 1.0)
    span = (t1 - t0) or 1.0
    names = [name if len(name) <= LEGEND_CHARS else name[: LEGEND_CHARS - 1] + "…" for name, _ in shown]
    legend = _legend_at(names)
    pad_t = 28 + 11 * len({ly for _, ly in legend})  # under the title and the legend rows
    iw, ih = W - PAD_L - PAD_R, H - pad_t - PAD_B

    def x(ts: float) -> float:
        return PAD_L + (ts - t0) / span * iw

    def y(v: float) -> float:
        return pad_t + ih - (v / top) * ih

    out = [f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {W} {H}' width='100%' role='img'>"]
    out.append(
        f"<title>{e(title)}</title><text x='8' y='15' font-size='13' font-weight='600'>{e(title)}</text>"
    )
    for i in range(5):
        v = top * i / 4
        yy = y(v)
        out.append(f"<line x1='{PAD_L}' x2='{W - PAD_R}' y1='{yy:.1f}' y2='{yy:.1f}' stroke='#e5e7eb'/>")
        out.append(
            f"<text x='{PAD_L - 4}' y='{yy + 4:.1f}' font-size='10' text-anchor='end' fill='#6b7280'>{e(fmt(v))}</text>"
        )
    for ts, anchor in ((t0, "start"), (t1, "end")):
        label = time.strftime("%H:%M", time.localtime(ts))
        out.append(
            f"<text x='{x(ts):.1f}' y='{H - 8}' font-size='10' text-anchor='{anchor}' fill='#6b7280'>{label}</text>"
        )
    if not values:
        out.append(f"<text x='{W / 2}' y='{H / 2}' text-anchor='middle' fill='#9ca3af'>no data</text>")
    for k, (name, vs) in enumerate(shown):
        colour = (colours or {}).get(name) or PALETTE[k % len(PALETTE)]
        for run in _runs(t, vs):
            pts = " ".join(f"{x(ts):.1f},{y(v):.1f}" for ts, v in run)
            if len(run) == 1:
                ((ts, v),) = run
                out.append(f"<circle cx='{x(ts):.1f}' cy='{y(v):.1f}' r='2' fill='{colour}'/>")
            else:
                out.append(f"<polyline points='{pts}' fill='none' stroke='{colour}' stroke-width='1.8'/>")
        lx, ly = legend[k]
        out.append(f"<rect x='{lx}' y='{ly - 6}' width='10' height='3' fill='{colour}'/>")
        out.append(f"<text x='{lx + 14}' y='{ly - 4}' font-size='10'>{e(names[k])}</text>")
    out.append("</svg>")
    return "".join(out)


def _legend_at(names: Sequence[str]) -> list[tuple[int, int]]:
    """(x, y) of each legend entry: rows under the title, left to right, as wide as each name needs (a fixed
    slot cut "all-MiniLM-L6-v2 weights" to "all-MiniLM-L6-v2 w")."""
    at: list[tuple[int, int]] = []
    x, y = PAD_L, 30
    for name in names:
        width = 14 + CHAR_PX * len(name) + 12
        if x > PAD_L and x + width > W - PAD_R:
            x, y = PAD_L, y + 11
        at.append((x, y))
        x += width
    return at


def _runs(t: Sequence[float], vs: Sequence[float | None]) -> list[list[tuple[float, float]]]:
    runs: list[list[tuple[float, float]]] = [[]]
    for ts, v in zip(t, vs, strict=False):
        if v is None or not math.isfinite(v):
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((ts, v))
    return [r for r in runs if r]


def _nice(v: float) -> float:
    """The axis top: 1, 2 or 5 times a power of ten, at least v."""
    if v <= 0:
        return 1.0
    p = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 5, 10):
        if m * p >= v:
            return m * p
    return 10 * p


# -- formatting -------------------------------------------------------------------------------------------------


def _num(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms" if v < 100 else f"{v:,.0f} ms"


def _axis_ms(v: float) -> str:
    return f"{v:.0f}" if v >= 10 or v == 0 else f"{v:.1f}"
