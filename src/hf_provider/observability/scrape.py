"""Gauges read from the server's state when Prometheus scrapes (never on the request path): worker and server
restarts, memory pools against their budgets, the HF cache against its disk budget. The alert rules in
deploy/prometheus/alerts.yml read these."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

CACHE_EVERY_S = 60.0  # scanning the HF cache walks its folders: at most once a minute


class ServerGauges:
    def __init__(self, provider: Any, metrics: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.provider = provider
        self.metrics = metrics
        self.clock = clock
        self._cache_at = -float("inf")

    def __call__(self) -> None:
        m, admin = self.metrics, self.provider.admin  # provider/admin.py: plain data
        for d in admin.describe():
            if d.get("restarts") is not None and d.get("isolation") == "process":
                m.child(m.worker_restarts, d["name"]).set(d["restarts"])
            self._tasks(d)
        for pool, v in admin.memory().get("pools", {}).items():
            if v.get("budget_bytes") is not None:
                m.child(m.memory_budget_bytes, pool).set(v["budget_bytes"])
            m.child(m.memory_used_bytes, pool).set(v.get("used_bytes") or 0)
        from hf_provider.resilience.respawn import restarts

        m.server_restarts.set(restarts()["restarts"] or 0)
        budget = self.provider.settings.cache.disk_budget
        now = self.clock()
        if budget is not None and now - self._cache_at >= CACHE_EVERY_S:
            self._cache_at = now
            self._cache(budget)

    def _tasks(self, d: dict[str, Any]) -> None:
        """Per-task gauges of a model: every task it serves (0 when idle, so a drained queue shows as 0)."""
        m, name = self.metrics, d["name"]
        load = d.get("tasks_load") or {}
        for task in dict.fromkeys([*(d.get("tasks") or []), *load]):
            v = load.get(task, {})
            m.child(m.task_queued, name, task).set(v.get("queued", 0))
            m.child(m.task_in_flight, name, task).set(v.get("in_flight", 0))
            m.child(m.task_share, name, task).set((d.get("task_share") or {}).get(task, 1))

    def _cache(self, budget: Any) -> None:
        from huggingface_hub import scan_cache_dir

        from hf_provider.cache.budget import budget_bytes
        from hf_provider.hub.resolve import HubEnv

        cache_dir = HubEnv.current().cache_dir
        try:
            size = scan_cache_dir(cache_dir).size_on_disk
        except Exception as e:  # no cache yet, or one being written: the next scrape tries again
            log.debug("scanning the HF cache for its gauge failed: %s", e)
            return
        self.metrics.cache_budget_bytes.set(budget_bytes(budget, cache_dir))
        self.metrics.cache_used_bytes.set(size)


def set_slo_targets(metrics: Any, specs: list[Any]) -> dict[str, float]:
    """Export each model's SLO targets (alert rules divide by them); returns model -> p95 target in seconds,
    which the observer compares each answered request's latency with (hfp_slo_slow_requests_total)."""
    p95: dict[str, float] = {}
    for s in specs:
        slo = getattr(s, "slo", None)
        if slo is None:
            continue
        if slo.p95_ms is not None:
            p95[s.name] = slo.p95_ms / 1000.0
            metrics.child(metrics.slo_latency_target, s.name).set(p95[s.name])
        if slo.error_rate is not None:
            metrics.child(metrics.slo_error_rate_target, s.name).set(slo.error_rate)
    return p95
