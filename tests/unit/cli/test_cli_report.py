"""`hfp report`'s text and HTML page from a gathered dict: "errors" is the server's failures, client errors (4xx)
beside it, so a window where every failure was a 4xx does not read as a failing server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hf_provider
from hf_provider.cli.report import text
from hf_provider.observability.report_page import render

T = [1_700_000_000.0 + 60 * i for i in range(3)]


def _stats(error_rate: float, client_error_rate: float | None) -> dict[str, Any]:
    st: dict[str, Any] = {
        "requests": 200,
        "throughput_per_s": 1.0,
        "error_rate": error_rate,
        "latency_ms": {"p50": 4.0, "p95": 9.0, "p99": 12.0},
        "timed_out": 0,
        "rejected": 0,
    }
    if client_error_rate is not None:
        st["client_error_rate"] = client_error_rate
    return st


def _data(client_error_rate: float | None = 0.465) -> dict[str, Any]:
    return {
        "server": "http://127.0.0.1:8000",
        "generated": T[-1],
        "since_s": 3600.0,
        "stats": _stats(0.0, client_error_rate),
        "model_stats": {"enc": _stats(0.01, client_error_rate)},
        "series": {
            "t": T,
            "throughput": {"enc": [1.0, 1.0, 1.0]},
            "latency_ms": {"p50": [4.0] * 3, "p95": [9.0] * 3, "p99": [12.0] * 3},
            "error_rate": [0.0, 0.0, None],
            "client_error_rate": [0.5, 0.43, None],
        },
        "groups": [],
        "findings": [],
        "slo": {},
    }


def test_text_says_errors_for_server_failures_with_4xx_beside() -> None:
    out = text(_data())
    assert "errors 0.00% · 4xx 46.50% ·" in out
    assert "enc: 200 requests, errors 1.00%, 4xx 46.50%, p95 9.0 ms" in out


def test_text_from_a_server_without_the_split_shows_a_dash() -> None:
    out = text(_data(client_error_rate=None))
    assert "errors 0.00% · 4xx - ·" in out and "errors 1.00%, 4xx -," in out


def test_page_has_server_errors_and_client_errors_side_by_side() -> None:
    page = render(_data())
    cards = dict(
        (label, value)
        for value, label in re.findall(r"<div class=card><b>([^<]*)</b><span>([^<]*)</span>", page)
    )
    assert cards["errors (server failures)"] == "0.00%" and cards["client errors (4xx)"] == "46.50%"
    assert "error rate" not in cards  # the headline says which errors it counts
    head = re.search(r"<table class=models>(<tr>.*?</tr>)", page)
    assert head and re.findall(r"<th>([^<]*)</th>", head.group(1))[3:5] == ["errors", "4xx"]
    assert "<td class=n>1.00%</td><td class=n>46.50%</td>" in page
    chart = next(svg for svg in page.split("<svg")[1:] if "Errors (% of requests)" in svg)
    assert "4xx client errors" in chart and chart.count("<polyline") == 2  # both lines drawn


def test_page_from_a_server_without_the_split_shows_a_dash() -> None:
    page = render(_data(client_error_rate=None))
    assert "<div class=card><b>-</b><span>client errors (4xx)</span></div>" in page


def test_period_reads_as_the_config_writes_it() -> None:
    data = _data() | {"since_s": 86400.0}
    assert "· last 24h" in text(data).splitlines()[0]
    assert "· last 24h ·" in render(data) and "86400s" not in render(data)


def test_percentiles_have_the_dashboards_colours() -> None:
    chart = next(svg for svg in render(_data()).split("<svg")[1:] if "Latency (ms)" in svg)
    strokes = re.findall(r"stroke='(#[0-9a-f]{6})' stroke-width", chart)
    assert strokes == ["#5cc87a", "#e6d35c", "#e5616b"]  # p50 green, p95 yellow, p99 red, as dashboard.js
    charts_js = (Path(hf_provider.__file__).parent / "dashboard/static/charts.js").read_text()
    palette = re.search(r"const PALETTE = \[([^\]]*)\]", charts_js)
    assert palette and [palette.group(1).split(", ")[i].strip('"') for i in (2, 5, 3)] == strokes


def test_memory_axis_in_binary_units() -> None:
    data = _data()
    data["series"]["rss_bytes"] = [100 * 2**20] * 3
    chart = next(svg for svg in render(data).split("<svg")[1:] if "Memory" in svg)
    assert "MiB</text>" in chart and "M</text>" not in chart


def test_memory_legend_names_each_model_whole() -> None:
    data = _data()
    data["series"]["rss_bytes"] = [100 * 2**20] * 3
    data["series"]["weight_bytes"] = {"all-MiniLM-L6-v2": [90 * 2**20] * 3, "t5-small": [200 * 2**20] * 3}
    chart = next(svg for svg in render(data).split("<svg")[1:] if "Memory" in svg)
    assert ">all-MiniLM-L6-v2 weights</text>" in chart and ">t5-small weights</text>" in chart
