"""`hfp report [--since 24h] [--html FILE]`: a summary of a running server over a period, from its admin APIs.

Without --html a short text summary goes to the terminal; with it, one self-contained HTML page with charts
(observability/report_page.py) is written, to open in a browser or attach to a ticket."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import typer

from hf_provider.cli.common import ApiKeyOpt, ConfigOpt, UrlOpt
from hf_provider.units import format_duration

MAX_SINCE_S = 30 * 86400.0


def _get(client: httpx.Client, path: str, optional: bool = False, **params: Any) -> Any:
    r = client.get(path, params=params)
    if optional and r.status_code == 404:  # an older server, or a part switched off (history, reporting)
        return None
    r.raise_for_status()
    return r.json()


def gather(client: httpx.Client, since_s: float, now: float | None = None) -> dict[str, Any]:
    """What the report shows, as the server's APIs answer it."""
    now = time.time() if now is None else now
    series = _get(client, "/v1/admin/series", window=since_s)
    stats = _get(client, "/v1/admin/stats", window=since_s)
    names = set(series.get("models") or [])
    listed = _get(client, "/v1/admin/models", optional=True) or {}
    names |= {m["name"] for m in listed.get("models", []) if isinstance(m, dict) and "name" in m}
    model_stats = {n: _get(client, "/v1/admin/stats", model=n, window=since_s) for n in sorted(names)}
    errors = _get(client, "/v1/admin/errors", optional=True, since=now - since_s) or {}
    findings = _get(client, "/v1/admin/findings", optional=True, refresh="true") or {}
    return {
        "server": str(client.base_url).rstrip("/"),
        "generated": now,
        "since_s": since_s,
        "stats": stats,
        "series": series,
        "model_stats": {n: s for n, s in model_stats.items() if s.get("requests")},
        "groups": errors.get("groups") or [],
        "findings": findings.get("findings") or [],
        "slo": _get(client, "/v1/admin/slo", optional=True) or {},
    }


def text(data: dict[str, Any]) -> str:
    """The terminal version: the figures a person checks first, one line each. "errors" is the share that failed
    by the server's doing (errors, time-outs, refusals); "4xx", the share refused for the request's own fault,
    sits beside it."""
    st = data["stats"]
    q = st.get("latency_ms") or {}

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f} ms"

    def pct(v: float | None) -> str:  # None: a server older than the 4xx split
        return "-" if v is None else f"{100 * v:.2f}%"

    lines = [
        f"hf-provider report · {data['server']} · last {format_duration(data['since_s'])}",
        f"requests {st.get('requests', 0):,} · ok/s {st.get('throughput_per_s', 0):.2f} · "
        f"errors {pct(st.get('error_rate') or 0)} · 4xx {pct(st.get('client_error_rate'))} · "
        f"p50 {ms(q.get('p50'))} · p95 {ms(q.get('p95'))} · "
        f"p99 {ms(q.get('p99'))}",
    ]
    for name, s in sorted(data["model_stats"].items()):
        mq = s.get("latency_ms") or {}
        lines.append(
            f"  {name}: {s['requests']:,} requests, errors {pct(s['error_rate'])}, "
            f"4xx {pct(s.get('client_error_rate'))}, p95 {ms(mq.get('p95'))}"
        )
    findings = data["findings"]
    lines.append(f"findings: {len(findings) or 'none'}")
    lines += [f"  ! {f['message']}" for f in findings]
    for name, m in sorted((data["slo"].get("models") or {}).items()):
        if m.get("objectives"):
            budgets = ", ".join(
                f"{o['objective']} {100 * o['budget_remaining']:.0f}% budget left" for o in m["objectives"]
            )
            lines.append(f"SLO {name}: {m['status']} ({budgets})")
    groups = data["groups"]
    lines.append(f"error groups: {len(groups)}")
    lines += [
        f"  {g['count']:>6} x {g['error_class']} {g.get('model') or '-'}: {g['message'][:100]}"
        for g in groups[:5]
    ]
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_command(
        since: str = typer.Option(
            "24h", "--since", help="The period to cover: '15m', '24h', '7d' (at most 30d)."
        ),
        html_file: Path | None = typer.Option(
            None, "--html", help="Write the report as one HTML page with charts to this file.", dir_okay=False
        ),
        url: UrlOpt = None,
        config: ConfigOpt = None,
        api_key: ApiKeyOpt = None,
    ) -> None:
        """A summary of a running server: traffic, latency percentiles, errors by group, memory, findings, SLOs."""
        from hf_provider.cli.common import connect, fail
        from hf_provider.spec import parse_duration

        try:
            since_s = parse_duration(since)
        except ValueError:
            fail(f"--since must be a duration such as '15m', '24h' or '7d', got {since!r}", 2)
        if not 1 <= since_s <= MAX_SINCE_S:
            fail(f"--since must be between 1s and 30d, got {since!r}", 2)
        with connect(url, config, api_key) as client:
            try:
                data = gather(client, since_s)
            except httpx.TransportError as exc:
                fail(f"cannot read {client.base_url}: no hfp server answers ({type(exc).__name__})")
            except httpx.HTTPStatusError as exc:
                fail(f"{exc.request.url.path} answered {exc.response.status_code}: {exc.response.text[:200]}")
        if html_file is None:
            typer.echo(text(data))
            return
        from hf_provider.observability.report_page import render

        html_file.write_text(render(data), encoding="utf-8")
        typer.echo(
            f"wrote {html_file} ({len(data['findings'])} findings, {len(data['groups'])} error groups)"
        )
