"""Findings from the metric history: per model, the current window against its baseline (observability/findings.py).

The monitor reads the history store (latencies and outcomes per model) and the version history (which commit
served when: the store's rows carry no revision, the swap times say which rows belong to which). It runs on the
observer's background thread every `interval_s` and on demand (GET /v1/admin/findings?refresh=true); the latest
findings are kept for the API, the dashboard, `hfp top` and the `hfp_findings` gauge Prometheus alerts on.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from hf_provider.observability import findings as fd
from hf_provider.observability.quantiles import ROLLUP_BOUNDS_MS
from hf_provider.observability.store import RequestHistoryStore

Serving = Callable[[str], Sequence[tuple[float, str | None]]]
FAILED = ("error", "timed_out")  # the model's failures; refusals and client errors are not its regressions


class FindingsMonitor:
    def __init__(
        self,
        store: RequestHistoryStore,
        *,
        models: Callable[[], Sequence[str]],
        serving: Serving | None = None,
        metrics: Any = None,
        clock: Callable[[], float] = time.time,
        window_s: float = 300.0,
        interval_s: float = 60.0,
        days: int = 7,
        config: fd.DetectorConfig | None = None,
    ) -> None:
        if window_s < 10:
            raise ValueError(f"window_s must be at least 10 seconds, got {window_s}")
        self.store = store
        self.models = models
        self.serving = serving or (lambda _m: ())
        self.metrics = metrics
        self.clock = clock
        self.window_s = float(window_s)
        self.interval_s = float(interval_s)
        self.days = days
        self.config = config or fd.DetectorConfig()
        self._lock = threading.Lock()
        self._latest: list[fd.Finding] = []
        self.evaluated_at: float | None = None

    def evaluate(self, now: float | None = None) -> list[fd.Finding]:
        now = self.clock() if now is None else now
        out: list[fd.Finding] = []
        for model in self.models():
            p = fd.plan(now, self.window_s, list(self.serving(model)), days=self.days)
            current = self.window(model, *p.current)
            baseline = self.pooled(model, p.baselines)
            out.extend(fd.detect(model, current, baseline, p, self.config))
        with self._lock:
            before = {(f.model, f.kind) for f in self._latest}
            self._latest, self.evaluated_at = out, now
        self._export(before, out)
        return out

    def latest(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_dict() for f in self._latest]

    def window(self, model: str, start: float, end: float) -> fd.Window:
        return self.pooled(model, ((start, end),))

    def pooled(self, model: str, spans: Sequence[tuple[float, float]]) -> fd.Window:
        lat: list[float] = []
        requests = failed = 0
        duration = 0.0
        for start, end in spans:
            if end <= start:
                continue
            w = self.store.window(start, end, model, None)
            c = w["counts"]
            n = sum(c.values())
            if not n:
                continue  # a day the model did not serve is no baseline of zero traffic
            lat.extend(w["latencies"])
            lat.extend(expand(w["hist"], w["lat_min"], w["lat_max"]))
            requests += n
            failed += sum(c.get(k, 0) for k in FAILED)
            duration += end - start
        return fd.Window(lat, requests, failed, duration)

    def _export(self, before: set[tuple[str, str]], now: list[fd.Finding]) -> None:
        m = self.metrics
        if m is None:
            return
        active = {(f.model, f.kind) for f in now}
        for model, kind in before - active:
            m.child(m.findings, model, kind).set(0)
        for model, kind in active:
            m.child(m.findings, model, kind).set(1)
            if (model, kind) not in before:
                m.child(m.findings_raised, model, kind).inc()


def expand(hist: Sequence[int], lo: float | None, hi: float | None) -> list[float]:
    """Rolled-up latencies (a bucket histogram) as representative values: each bucket's geometric middle,
    clamped to the observed min and max. Enough for rank tests, which only ask which side of a value a sample is."""
    out: list[float] = []
    for i, count in enumerate(hist):
        if not count:
            continue
        upper = ROLLUP_BOUNDS_MS[i] if i < len(ROLLUP_BOUNDS_MS) else ROLLUP_BOUNDS_MS[-1] * 2
        lower = ROLLUP_BOUNDS_MS[i - 1] if i else upper / 2
        v = math.sqrt(lower * upper)
        if lo is not None:
            v = max(v, lo)
        if hi is not None:
            v = min(v, hi)
        out.extend([v] * count)
    return out
