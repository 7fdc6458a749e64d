"""`hfp top`: a live terminal view of a running server, from /v1/admin/stats and /v1/admin/series, with the active
findings (/v1/admin/findings) and SLOs not met (/v1/admin/slo) under the table."""

from __future__ import annotations

import time
from typing import Any

import httpx
import typer
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from hf_provider.cli.common import ApiKeyOpt, ConfigOpt, UrlOpt
from hf_provider.units import format_size

WINDOW_S = 60  # the live view looks at the last minute
SERIES_STEP_S = 5


def _mib(v: float | None) -> str:
    """Bytes in MiB without the unit, which the caption gives once: "86.6 MiB" in three columns would not fit
    80 columns, and one unit for all rows lines the figures up (a decimal only below 100, as format_size)."""
    if v is None:
        return "-"
    mib = v / 2**20
    return f"{mib:.1f}" if abs(mib) < 100 else f"{mib:.0f}"


def _latency(v: float | None) -> str:
    """Milliseconds, a decimal only below 10 ms."""
    return "-" if v is None else f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _last(values: list[float | None] | None) -> float | None:
    for v in reversed(values or []):
        if v is not None:
            return v
    return None


def _models(client: httpx.Client, series: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> its /v1/admin/models row ({} when the server has no such route or row)."""
    rows: dict[str, dict[str, Any]] = {name: {} for name in series.get("models") or []}
    try:
        r = client.get("/v1/admin/models")
        if r.status_code == 200:
            for m in r.json().get("models", []):
                name = m.get("name") if isinstance(m, dict) else m
                if isinstance(name, str):
                    rows[name] = m if isinstance(m, dict) else {}
    except (httpx.HTTPError, ValueError, AttributeError):
        pass  # the models endpoint is optional
    return dict(sorted(rows.items()))


def _now(row: dict[str, Any], key: str, series: dict[str, Any], series_key: str, model: str) -> str:
    """The model's current count: the server's live value, else the newest series sample."""
    value = row.get(key)
    if not isinstance(value, int | float):
        value = _last(series.get(series_key, {}).get(model))
    return _ms(value).removesuffix(".0")


def _task_rows(row: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Under a model whose tasks have work: one row per task, " task xN" with its share when several tasks
    share the weights (scheduling/share.py), with its queued items and requests in flight."""
    load = row.get("tasks_load")
    if not isinstance(load, dict) or not load:
        return []
    shares = row.get("task_share") or {}
    out = []
    for task, v in load.items():
        share = shares.get(task)
        out.append((f" {task}" + (f" x{share}" if share else ""), v if isinstance(v, dict) else {}))
    return out


def frame(client: httpx.Client) -> Group:
    """One screen: a process line and a table with one row per model."""
    series = client.get("/v1/admin/series", params={"window": WINDOW_S, "step": SERIES_STEP_S})
    series.raise_for_status()
    s = series.json()
    # Short headers and sizes, explained once in the caption, and one space between columns: eleven columns
    # fit 80 terminal columns with model names up to 21 characters whole.
    table = Table(
        title=f"hf-provider · last {WINDOW_S}s",
        caption="err: % failed by the server (errors, time-outs, refusals) · 4xx: % client errors "
        "· p50/p95 in ms · queue, busy: queued and in flight now · weights, work, budget in MiB, weights and "
        "work measured (work: the largest forward pass) · budget: what the memory budget holds (weights + "
        "estimated working memory)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        padding=(0, 0),
    )
    table.add_column("model", no_wrap=True)
    for col, justify in (
        ("req/s", "right"),
        ("p50", "right"),
        ("p95", "right"),
        ("err", "right"),  # the headline: failures of the server's making
        ("4xx", "right"),  # beside it: a client sending bad requests is not a failing model
        # now, not over the window: the series' queue_depth is each step's peak, which hid a drained queue
        ("queue", "right"),
        ("busy", "right"),
        ("weights", "right"),
        ("work", "right"),
        ("budget", "right"),
    ):
        table.add_column(col, justify=justify, min_width=len(col))  # type: ignore[arg-type]
    models = _models(client, s)
    for model, row in models.items():
        r = client.get("/v1/admin/stats", params={"model": model, "window": WINDOW_S})
        r.raise_for_status()
        st = r.json()
        accounted = _last(s.get("accounted_bytes", {}).get(model))
        weight = _last(s.get("weight_bytes", {}).get(model))
        working = row.get("working_bytes_peak")
        if not isinstance(working, int | float):
            working = max(
                (v for v in s.get("peak_working_bytes", {}).get(model) or [] if v is not None), default=None
            )
        table.add_row(
            model,
            f"{st['throughput_per_s']:.2f}",
            _latency(st["latency_ms"]["p50"]),
            _latency(st["latency_ms"]["p95"]),
            _percent(st["error_rate"]),
            _percent(st.get("client_error_rate")),  # absent from servers older than the split
            _now(row, "queued", s, "queue_depth", model),
            _now(row, "in_flight", s, "in_flight", model),
            _mib(weight),
            _mib(working),
            _mib(accounted),
        )
        for task, load in _task_rows(row):
            table.add_row(task, "", "", "", "", "", str(load.get("queued", 0)), str(load.get("in_flight", 0)))
    cpu, rss = _last(s.get("cpu_percent")), _last(s.get("rss_bytes"))
    head = Text(
        f"CPU {'-' if cpu is None else f'{cpu:.0f}%'}   RSS {format_size(rss)}   "
        f"system memory used {format_size(_last(s.get('system_memory_used_bytes')))}"
    )
    for idx, used in sorted((s.get("gpu") or {}).get("memory_used_bytes", {}).items()):
        util = _last(s["gpu"].get("utilization_percent", {}).get(idx))
        head.append(f"   GPU{idx} {format_size(_last(used))} {'-' if util is None else f'{util:.0f}%'}")
    # A failed model has no numbers to show: its state and reason go under the table (the table keeps 80 columns)
    failed = [
        Text(f"{name} failed: {row.get('error') or 'no reason given'}", style="red")
        for name, row in models.items()
        if row.get("state") == "failed"
    ]
    return Group(head, table, *_pipelines(client), *failed, *_alerts(client))


def _pipelines(client: httpx.Client) -> list[Table]:
    """One row per pipeline and one per step under it (GET /v1/admin/stats' `pipelines`), when any ran."""
    try:
        r = client.get("/v1/admin/stats", params={"window": WINDOW_S})
        found = r.json().get("pipelines") if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return []  # older servers have no pipelines part
    if not found:
        return []
    table = Table(
        title="pipelines",
        caption="per step: requests/s, p50/p95 in ms, and how runs ended (ok, timed_out, error, skipped...)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        padding=(0, 0),
    )
    table.add_column("pipeline / step", no_wrap=True)
    for col in ("req/s", "p50", "p95"):
        table.add_column(col, justify="right", min_width=len(col))
    table.add_column("ends")

    def row(label: str, f: dict[str, Any]) -> None:
        ends = " ".join(f"{k} {v}" for k, v in sorted((f.get("outcomes") or {}).items()))
        lat = f.get("latency_ms") or {}
        table.add_row(
            label, f"{f.get('per_s', 0):.2f}", _latency(lat.get("p50")), _latency(lat.get("p95")), ends
        )

    for name, p in sorted(found.items()):
        if "count" in p:
            row(name, p)
        for step, f in (p.get("steps") or {}).items():
            row(f"  {step}", f)
    return [table]


def _alerts(client: httpx.Client) -> list[Text]:
    """Active findings (GET /v1/admin/findings, as the monitor last evaluated them) and SLOs not met."""
    out: list[Text] = []
    try:
        r = client.get("/v1/admin/findings")
        if r.status_code == 200:
            out += [Text(f"! {f['message']}", style="yellow") for f in r.json().get("findings", [])]
        r = client.get("/v1/admin/slo")
        if r.status_code == 200:
            for name, m in sorted(r.json().get("models", {}).items()):
                if m.get("status") in ("at_risk", "breached"):
                    left = ", ".join(
                        f"{o['objective']} {100 * o['budget_remaining']:.0f}% budget left"
                        for o in m["objectives"]
                    )
                    out.append(Text(f"SLO {name}: {m['status']} ({left})", style="red"))
    except (httpx.HTTPError, ValueError, KeyError, AttributeError, TypeError):
        pass  # both endpoints are optional: a server without history has neither
    return out


def _safe_frame(client: httpx.Client, url: str) -> Group | Text:
    try:
        return frame(client)
    except httpx.TransportError as exc:
        return Text(f"cannot read {url}: no hfp server answers ({type(exc).__name__}: {exc})", style="red")
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return Text(f"cannot read {url}: {exc}", style="red")


def top(
    url: str = "http://127.0.0.1:8000",
    interval: float = 2.0,
    once: bool = False,
    *,
    client: httpx.Client | None = None,
    console: Console | None = None,
    err_console: Console | None = None,
) -> int:
    """Poll the server every `interval` seconds and redraw; `once` prints one frame and returns.

    Returns 1, after one line on `err_console` (default: `console`), when the first frame cannot be read; a
    failure after that shows in the live view, since a restarting server comes back."""
    if interval <= 0:
        raise ValueError(f"interval must be positive seconds, got {interval}")
    from hf_provider.cli.common import http_client

    own = client is None
    http = client if client is not None else http_client(url)
    console = console or Console()
    try:
        first = _safe_frame(http, url)
        if isinstance(first, Text):
            (err_console or console).print(first, soft_wrap=True)
            return 1
        if once:
            console.print(first)
            return 0
        with Live(first, console=console, refresh_per_second=4, screen=False) as live:
            while True:
                time.sleep(interval)
                live.update(_safe_frame(http, url))
    except KeyboardInterrupt:
        pass
    finally:
        if own:
            http.close()
    return 0


def register(app: typer.Typer) -> None:
    @app.command("top")
    def top_command(
        url: UrlOpt = None,
        config: ConfigOpt = None,
        interval: float = typer.Option(2.0, "--interval", min=0.1, help="Seconds between refreshes."),
        once: bool = typer.Option(False, "--once", help="Print one frame and exit."),
        api_key: ApiKeyOpt = None,
    ) -> None:
        """Live per-model throughput, latency, error rates (server failures; client errors beside), current
        queue and memory of a running server."""
        from hf_provider.cli.common import connect

        # a 401 ends the command in the client's hook with one line, live view or not
        with connect(url, config, api_key) as client:
            base = str(client.base_url).rstrip("/")
            code = top(
                url=base, interval=interval, once=once, client=client, err_console=Console(stderr=True)
            )
        if code:
            raise typer.Exit(code)
