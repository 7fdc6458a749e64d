"""Stage profiler: a rolling window of per-batch stage timings per model, summarised on demand.

Recording is one `deque.append` (atomic in CPython, bounded by `maxlen`), so batcher threads never wait on it;
the summary copies the deque and does the arithmetic on the admin request that asked for it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from hf_provider.observability.metrics import STAGES
from hf_provider.observability.quantiles import exact

# (ts, size, queue_s, preprocess_s, forward_s, postprocess_s)
BatchTiming = tuple[float, int, float, float, float, float]


class StageProfiler:
    def __init__(self, window: int = 2048) -> None:
        if window < 1:
            raise ValueError(f"profiler window must be at least 1 batch, got {window}")
        self.window = window
        self._batches: dict[str, deque[BatchTiming]] = {}

    def record(
        self,
        model: str,
        ts: float,
        size: int,
        queue_s: float,
        preprocess_s: float,
        forward_s: float,
        postprocess_s: float,
    ) -> None:
        d = self._batches.get(model)
        if d is None:
            d = self._batches.setdefault(model, deque(maxlen=self.window))
        d.append((ts, size, queue_s, preprocess_s, forward_s, postprocess_s))

    def models(self) -> list[str]:
        return sorted(self._batches)

    def forget(self, model: str) -> None:
        self._batches.pop(model, None)

    def summary(self, model: str) -> dict[str, Any]:
        """Where the time goes: per stage mean/p50/p95/p99 in ms and share of the summed stage time."""
        rows = list(self._batches.get(model, ()))
        out: dict[str, Any] = {
            "model": model,
            "batches": len(rows),
            "window": {
                "max_batches": self.window,
                "since": rows[0][0] if rows else None,
                "until": rows[-1][0] if rows else None,
            },
            "mean_batch_size": round(sum(r[1] for r in rows) / len(rows), 3) if rows else None,
            "stages": {},
        }
        totals = [sum(r[2:6]) for r in rows]
        grand = sum(totals)
        for i, stage in enumerate(STAGES):
            vals = sorted(r[2 + i] * 1000.0 for r in rows)
            out["stages"][stage] = _describe(
                vals, (sum(vals) / 1000.0 / grand * 100.0) if grand > 0 else None
            )
        out["total"] = _describe(sorted(t * 1000.0 for t in totals), 100.0 if grand > 0 else None)
        return out


def _describe(sorted_ms: list[float], percent: float | None) -> dict[str, float | None]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 4)

    n = len(sorted_ms)
    return {
        "mean_ms": r(sum(sorted_ms) / n) if n else None,
        "p50_ms": r(exact(sorted_ms, 0.50)),
        "p95_ms": r(exact(sorted_ms, 0.95)),
        "p99_ms": r(exact(sorted_ms, 0.99)),
        "percent": r(percent),
    }
