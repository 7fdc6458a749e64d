"""Reads over an Observer's history for the admin routes and the dashboard: window statistics, chart series,
stage profiles. Functions of the observer (its store, clock and buffers), not methods: the observer records,
these read.

`error_rate` is the headline rate of failures of the server's making (`types.SERVER_FAILURES`: errors,
time-outs, refusals); client errors have their own rate beside it, so a client sending bad requests does not
look like a failing model.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from hf_provider.observability import quantiles
from hf_provider.observability.series import shape_series
from hf_provider.types import SERVER_FAILURES

if TYPE_CHECKING:
    from hf_provider.observability.observer import Observer

MAX_POINTS = 2000
MAX_WINDOW_S = 30 * 86400.0
SERIES_POINTS = 120


def known_models(obs: Observer) -> list[str]:
    with obs._state_lock:
        live = set(obs._queue) | set(obs._in_flight)
    return sorted(live | set(obs.profiler.models()))


def profile(obs: Observer, model: str) -> dict[str, Any]:
    return obs.profiler.summary(model)


def stats(obs: Observer, model: str | None, task: str | None, window_s: float = 300) -> dict[str, Any]:
    """Requests in the last window_s seconds. throughput_per_s counts ok requests; error_rate is the share
    that failed by the server's doing (errors, time-outs, refusals: the headline), client_error_rate the share
    refused for the request's own fault (4xx), beside it; cancellations are neither. Latency percentiles cover
    every outcome but rejections and client errors (answered at once)."""
    window_s = _check_window(window_s)
    if not obs.closed:
        obs.flush()
    now = obs.clock()
    w = obs.store.window(now - window_s, now, model, task)
    c = w["counts"]
    total = sum(c.values())
    failed = sum(c.get(o, 0) for o in SERVER_FAILURES)
    return {
        "model": model,
        "task": task,
        "window_s": window_s,
        "requests": total,
        "throughput_per_s": round(c.get("ok", 0) / window_s, 6),
        "error_rate": round(failed / total, 6) if total else 0.0,
        "client_error_rate": round(c.get("client_error", 0) / total, 6) if total else 0.0,
        "latency_ms": quantiles.summarize(w["latencies"], w["hist"], w["lat_min"], w["lat_max"]),
        "ok": c.get("ok", 0),
        "errors": c.get("error", 0),
        "client_errors": c.get("client_error", 0),
        "rejected": c.get("rejected", 0),
        "cancelled": c.get("cancelled", 0),
        "timed_out": c.get("timed_out", 0),
        "items": w["items"],
        "tokens": w["tokens"],
    }


def series(
    obs: Observer, window_s: float, step_s: float | None = None, model: str | None = None
) -> dict[str, Any]:
    """Bucketed series for charts. Steps under a minute read raw samples; longer steps read the minute
    rollups and are rounded up to whole minutes. A bucket with no sample at all is None (a gap)."""
    window_s = _check_window(window_s)
    if step_s is None:
        step_s = max(window_s / SERIES_POINTS, min(obs.sample_interval_s, window_s / 10))
    if not step_s > 0 or not math.isfinite(step_s):
        raise ValueError(f"step must be a positive number of seconds, got {step_s}")
    step = float(math.ceil(step_s / 60) * 60) if step_s >= 60 else float(step_s)
    n = math.ceil(window_s / step)
    if n > MAX_POINTS:
        raise ValueError(f"window/step gives {n} points; at most {MAX_POINTS}: use a larger step")
    if not obs.closed:
        obs.flush()
    now = obs.clock()
    end = (math.floor(now / step) + 1) * step
    start = end - n * step
    req = obs.store.request_buckets(start, step, n, model)
    res = obs.store.resource_buckets(start, step, n)
    return shape_series(now, start, step, n, window_s, model, req, res)


def _check_window(window_s: float) -> float:
    w = float(window_s)
    if not math.isfinite(w) or w < 1 or w > MAX_WINDOW_S:
        raise ValueError(
            f"window must be between 1 second and 30 days ({int(MAX_WINDOW_S)} s), got {window_s}"
        )
    return w
