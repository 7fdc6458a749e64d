"""Service-level objectives per model (`slo = { p95_ms = 200, error_rate = 0.01 }` in hfp.toml): status and
remaining error budget over the SLO's window, from the history store (GET /v1/admin/slo, `hfp report`).

Budgets, as the SRE workbook counts them:
- latency: a p95 objective lets 5% of answered requests be slower than `p95_ms`; the budget is that 5%, spent by
  each slower request (exact for raw samples, by bucket for rolled-up minutes, the one straddling the target
  counted in proportion).
- errors: `error_rate` of the requests may fail (errors, time-outs and refusals; client errors and cancellations
  are the caller's). Minutes rolled up before the history's schema 2 and already past the raw retention then
  hold client errors and cancellations among their errors, so a window reaching them errs on the strict side.
`budget_remaining` is 1 with nothing spent, 0 when spent, negative when overspent. Status: no_data, ok, at_risk
(under a quarter of the budget left), breached (nothing left).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hf_provider.observability import quantiles
from hf_provider.observability.quantiles import ROLLUP_BOUNDS_MS
from hf_provider.spec import SloSpec

LATENCY_BUDGET = 0.05  # a p95 objective: 5% may be slower
FAILED = ("error", "timed_out", "rejected")
AT_RISK = 0.25


def evaluate(spec: SloSpec, w: dict[str, Any]) -> dict[str, Any]:
    """`w` is `RequestHistoryStore.window(now - spec.window, now, model, None)`."""
    counts: dict[str, int] = w["counts"]
    total = sum(v for k, v in counts.items() if k not in ("client_error", "cancelled"))
    out: dict[str, Any] = {"window_s": spec.window, "requests": total}
    objectives: list[dict[str, Any]] = []
    if spec.p95_ms is not None:
        raw, hist = w["latencies"], w["hist"]
        answered = len(raw) + sum(hist)
        slow = sum(1 for v in raw if v > spec.p95_ms) + slower_in_hist(hist, spec.p95_ms)
        p95 = quantiles.summarize(list(raw), list(hist), w["lat_min"], w["lat_max"])["p95"]
        objectives.append(
            _objective("latency", spec.p95_ms, p95, slow, answered, LATENCY_BUDGET) | {"slow": round(slow, 2)}
        )
    if spec.error_rate is not None:
        failed = sum(counts.get(k, 0) for k in FAILED)
        rate = failed / total if total else None
        obj = _objective("error_rate", spec.error_rate, rate, failed, total, spec.error_rate)
        objectives.append(obj | {"failed": failed})
    out["objectives"] = objectives
    out["status"] = _worst([o["status"] for o in objectives])
    return out


def _objective(
    kind: str, target: float, observed: float | None, spent: float, total: int, share: float
) -> dict[str, Any]:
    if not total:
        return {
            "objective": kind,
            "target": target,
            "observed": None,
            "budget_remaining": 1.0,
            "status": "no_data",
        }
    allowed = share * total
    remaining = 1.0 - spent / allowed if allowed > 0 else (1.0 if spent == 0 else -1.0)
    status = "breached" if remaining <= 0 else "at_risk" if remaining < AT_RISK else "ok"
    return {
        "objective": kind,
        "target": target,
        "observed": None if observed is None else round(observed, 6),
        "budget_remaining": round(remaining, 4),
        "status": status,
    }


def slower_in_hist(hist: Sequence[int], threshold_ms: float) -> float:
    """Rolled-up requests slower than the threshold: whole buckets above it, the straddling one in proportion."""
    slow = 0.0
    for i, count in enumerate(hist):
        if not count:
            continue
        lo = ROLLUP_BOUNDS_MS[i - 1] if i else 0.0
        hi = ROLLUP_BOUNDS_MS[i] if i < len(ROLLUP_BOUNDS_MS) else float("inf")
        if lo >= threshold_ms:
            slow += count
        elif hi > threshold_ms:
            slow += count * (hi - threshold_ms) / (hi - lo) if hi != float("inf") else count
    return slow


def _worst(statuses: list[str]) -> str:
    for s in ("breached", "at_risk", "ok"):
        if s in statuses:
            return s
    return "no_data" if statuses else "none"


def report(specs: dict[str, SloSpec | None], window_of: Any, now: float) -> dict[str, Any]:
    """Every model's SLO status; `window_of(start, end, model)` reads the history store."""
    models = {}
    for name, spec in sorted(specs.items()):
        if spec is None or (spec.p95_ms is None and spec.error_rate is None):
            models[name] = {"status": "none", "objectives": []}
            continue
        models[name] = {"slo": spec.model_dump()} | evaluate(spec, window_of(now - spec.window, now, name))
    return {"models": models}
