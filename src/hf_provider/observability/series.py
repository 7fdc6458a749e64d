"""Shapes the store's buckets into the JSON the dashboard and `hfp top` read from /v1/admin/series.

Per bucket, as in `queries.stats`: `error_rate` is server failures (`types.SERVER_FAILURES`) over all requests
ended in it, `client_error_rate` client errors (4xx) over the same; cancellations count only in the total."""

from __future__ import annotations

from typing import Any

from hf_provider.observability import quantiles


def shape_series(
    now: float,
    start: float,
    step: float,
    n: int,
    window_s: float,
    model: str | None,
    req: dict[str, Any],
    res: dict[str, dict[str, list[float | None]]],
) -> dict[str, Any]:
    # The newest bucket is still filling: rate over the part elapsed, at least a second (or the step) of it.
    elapsed = [max(min(step, 1.0), min(step, now - (start + i * step))) for i in range(n)]
    observed = [False] * n
    for per_key in res.values():
        for vals in per_key.values():
            for i, v in enumerate(vals):
                if v is not None:
                    observed[i] = True
    oks, requests = req["ok"], req["requests"]
    for i in range(n):
        if requests[i]:
            observed[i] = True
    throughput = {
        m: [round(v[i] / elapsed[i], 4) if observed[i] else None for i in range(n)]
        for m, v in sorted(oks.items())
    }
    latency: dict[str, list[float | None]] = {"p50": [], "p95": [], "p99": []}
    error_rate: list[float | None] = []
    client_error_rate: list[float | None] = []
    for i in range(n):
        lo, hi = req["bounds"][i]
        q = quantiles.summarize(req["latencies"][i], req["hists"][i], lo, hi)
        for k in latency:
            latency[k].append(q[k])
        for out, part in ((error_rate, req["failed"]), (client_error_rate, req["client_errors"])):
            out.append(round(part[i] / requests[i], 6) if requests[i] else (0.0 if observed[i] else None))

    def per_model(name: str) -> dict[str, list[float | None]]:
        d = res.get(name, {})
        return {k: v for k, v in sorted(d.items()) if model is None or k == model}

    def process(name: str) -> list[float | None]:
        return res.get(name, {}).get("", [None] * n)

    gpu = {
        name: dict(sorted(res[f"gpu_{name}"].items()))
        for name in ("memory_used_bytes", "memory_total_bytes", "utilization_percent")
        if f"gpu_{name}" in res
    }
    models = sorted(set(throughput) | set(per_model("weight_bytes")) | set(per_model("queue_depth")))
    return {
        "window_s": window_s,
        "step_s": step,
        "start": start,
        "end": start + n * step,
        "now": now,
        "model": model,
        "models": models,
        "t": [start + i * step for i in range(n)],
        "throughput": throughput,
        "throughput_total": [
            round(sum(v[i] for v in oks.values()) / elapsed[i], 4) if observed[i] else None for i in range(n)
        ],
        "latency_ms": latency,
        "error_rate": error_rate,
        "client_error_rate": client_error_rate,
        "queue_depth": per_model("queue_depth"),
        "in_flight": per_model("in_flight"),
        "weight_bytes": per_model("weight_bytes"),
        "accounted_bytes": per_model("accounted_bytes"),
        "peak_working_bytes": per_model("peak_working_bytes"),
        "cpu_percent": process("cpu_percent"),
        "rss_bytes": process("rss_bytes"),
        "system_memory_used_bytes": process("system_memory_used_bytes"),
        "system_memory_total_bytes": process("system_memory_total_bytes"),
        "gpu": gpu,
    }
