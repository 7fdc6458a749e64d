"""Per pipeline and per step statistics over a recent window, in memory: counts by outcome and latency
percentiles for GET /v1/admin/stats (its `pipelines` part) and `hfp top`.

The history store (metrics.db) keeps requests per model; a pipeline's steps are requests there too, under their
models. This keeps what that store cannot say: which pipeline and step a latency belongs to. Bounded: the last
`MAX_SAMPLES` ends per (pipeline, step), and the names are configured ones.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from hf_provider.observability.quantiles import exact

MAX_SAMPLES = 4096
RUN = ""  # the key of a whole run beside its steps


class PipelineStats:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._samples: dict[tuple[str, str], deque[tuple[float, str, float]]] = {}

    def add(self, pipeline: str, step: str | None, outcome: str, seconds: float) -> None:
        key = (pipeline, step or RUN)
        with self._lock:
            d = self._samples.get(key)
            if d is None:
                d = self._samples[key] = deque(maxlen=MAX_SAMPLES)
            d.append((self.clock(), outcome, seconds))

    def window(self, window_s: float) -> dict[str, Any]:
        """{pipeline: {"count", "outcomes", "latency_ms": {p50, p95}, "per_s", "steps": {step: same}}}."""
        since = self.clock() - window_s
        with self._lock:
            rows = {k: [s for s in d if s[0] >= since] for k, d in self._samples.items()}
        out: dict[str, Any] = {}
        for (pipeline, step), samples in sorted(rows.items()):
            entry = out.setdefault(pipeline, {"steps": {}})
            figures = _figures(samples, window_s)
            if step == RUN:
                entry.update(figures)
            else:
                entry["steps"][step] = figures
        return out


def _figures(samples: list[tuple[float, str, float]], window_s: float) -> dict[str, Any]:
    outcomes: dict[str, int] = {}
    for _, outcome, _ in samples:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    latencies = sorted(s * 1000.0 for _, o, s in samples if o not in ("skipped", "client_error"))
    p50, p95 = exact(latencies, 0.5), exact(latencies, 0.95)
    return {
        "count": len(samples),
        "per_s": len(samples) / window_s if window_s > 0 else 0.0,
        "outcomes": outcomes,
        "latency_ms": {
            "p50": None if p50 is None else round(p50, 3),
            "p95": None if p95 is None else round(p95, 3),
        },
    }
