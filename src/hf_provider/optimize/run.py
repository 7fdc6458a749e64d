"""Measure every candidate for one model on this machine and choose the fastest that passes the guard.

The eager model is loaded once and gives the guard's reference outputs for every task the model serves; each
torch candidate is built on a fresh load (it changes the module in place), each graph candidate on the eager
load (it only adds a backend). A candidate is judged on every served task, so a variant that breaks one of a
T5's three tasks is refused for all of them, and measured on the primary task at batch 1 and the max batch.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hf_provider.hub.resolve import Resolved, resolve
from hf_provider.optimize import guard, store
from hf_provider.optimize.candidates import CANDIDATES, Candidate, precision_of
from hf_provider.optimize.env import hardware, library_versions
from hf_provider.optimize.measure import measure
from hf_provider.runtime.model import LoadedModel
from hf_provider.spec import ModelSpec
from hf_provider.variants import BASELINE

log = logging.getLogger(__name__)
MIN_GAIN = 1.05  # a variant replaces eager only when at least this much faster: below it is measurement noise


@dataclass
class Row:
    name: str
    kind: str
    note: str
    precision: str | None = None  # what the variant computes in (fp32, bf16, int8 dynamic, ...)
    available: bool = True
    accepted: bool = False
    reason: str | None = None  # why unavailable or refused
    latency_ms_p50: float | None = None
    throughput_per_s: float | None = None
    accuracy: float | None = None
    accuracy_metric: str | None = None
    memory_bytes: int | None = None
    build_s: float | None = None


@dataclass
class Report:
    model: str
    task: str
    tasks: list[str]
    model_id: str
    max_batch: int
    chosen: str = BASELINE
    variants: list[Row] = field(default_factory=list)
    hardware: dict[str, Any] = field(default_factory=hardware)
    versions: dict[str, str] = field(default_factory=library_versions)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "variants": [asdict(r) for r in self.variants]}

    def row(self, name: str) -> Row | None:
        return next((r for r in self.variants if r.name == name), None)


def choose(rows: list[Row], min_gain: float = MIN_GAIN) -> str:
    """The accepted variant with the highest throughput at the max batch, when it beats eager by `min_gain`."""
    eager = next(r for r in rows if r.name == BASELINE)
    best = max(
        (r for r in rows if r.accepted and r.throughput_per_s is not None),
        key=lambda r: (r.throughput_per_s, -(r.latency_ms_p50 or 0.0)),
        default=eager,
    )
    if best is eager or (best.throughput_per_s or 0) < min_gain * (eager.throughput_per_s or 0):
        return BASELINE
    return best.name


def attach(model: LoadedModel, tasks: list[str]) -> None:
    from hf_provider.runtime.tasks import build_handler

    for t in tasks:
        model.handlers.setdefault(t, build_handler(t, model, model.spec.defaults.get(t)))


def optimize(
    spec: ModelSpec,
    *,
    task: str | None = None,
    tasks: list[str] | None = None,
    candidates: Iterable[str | Candidate] | None = None,
    resolved: Resolved | None = None,
    cache_dir: Path | None = None,
    repeats: int = 20,
    batch_repeats: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> Report:
    """Build, guard and time each candidate (all known ones by default); the report's `chosen` is the winner."""
    from hf_provider.runtime.loader import load_model
    from hf_provider.runtime.tasks import supported_tasks

    eager_spec = spec.model_copy(update={"optimize": "none"})
    resolved = resolved or resolve(spec.source, spec.revision)

    def fresh() -> LoadedModel:
        m = load_model(eager_spec, resolved=resolved)
        attach(m, served)
        return m

    base = load_model(eager_spec, resolved=resolved)
    served = list(tasks or spec.tasks or supported_tasks(base))
    task = task or served[0]
    if task not in served:
        raise ValueError(f"model {spec.name!r} does not serve task {task!r}; it serves: {', '.join(served)}")
    attach(base, served)
    refs = {t: guard.reference(base.handlers[t]) for t in served}
    max_batch = spec.batching.max_batch_size
    report = Report(spec.name, task, served, store.model_id(base.path, base.commit), max_batch)
    timing = dict(repeats=repeats, batch_repeats=batch_repeats, clock=clock)

    t = measure(base.handlers[task], max_batch, **timing)
    metric = guard.judge(guard.family(base.handlers[task]), refs[task], refs[task]).metric
    report.variants.append(
        Row(
            BASELINE,
            "baseline",
            CANDIDATES[BASELINE].note,
            precision_of(CANDIDATES[BASELINE], base),
            accepted=True,
            latency_ms_p50=t.latency_ms_p50,
            throughput_per_s=t.throughput_per_s,
            accuracy=1.0,
            accuracy_metric=metric,
            memory_bytes=base.weight_bytes,
            build_s=0.0,
        )
    )
    chosen = [c if isinstance(c, Candidate) else CANDIDATES[c] for c in (candidates or CANDIDATES.values())]
    for cand in chosen:
        if cand.name == BASELINE:
            continue
        report.variants.append(
            _try(cand, base, fresh, served, task, refs, max_batch, cache_dir, timing, clock)
        )
    # Eager again at the end, keeping its better figures: on a shared or warming-up CPU the first measurement is
    # the noisiest, and a candidate must beat eager's best, not its worst.
    again, eager = measure(base.handlers[task], max_batch, **timing), report.variants[0]
    eager.latency_ms_p50 = min(eager.latency_ms_p50 or again.latency_ms_p50, again.latency_ms_p50)
    eager.throughput_per_s = max(eager.throughput_per_s or 0.0, again.throughput_per_s)
    report.chosen = choose(report.variants)
    return report


def _try(
    cand: Candidate,
    base: LoadedModel,
    fresh: Callable[[], LoadedModel],
    served: list[str],
    task: str,
    refs: dict[str, Any],
    max_batch: int,
    cache_dir: Path | None,
    timing: dict[str, Any],
    clock: Callable[[], float],
) -> Row:
    row = Row(cand.name, cand.kind, cand.note, precision_of(cand, base))
    reason = cand.unavailable(base, served)
    if reason is not None:
        row.available, row.reason = False, reason
        return row
    model = base if cand.kind == "graph" else fresh()
    weight_bytes = base.weight_bytes
    try:
        t0 = clock()
        cand.build(model, served, cache_dir)
        for h in model.handlers.values():  # first calls count as build: torch.compile compiles lazily
            guard.run(h, *guard.probe(h, 1))
        row.build_s = clock() - t0
        row.memory_bytes = model.weight_bytes
        verdicts = {t: guard.check(model.handlers[t], refs[t]) for t in served}
        row.accuracy, row.accuracy_metric = verdicts[task].figure, verdicts[task].metric
        bad = [(t, v) for t, v in verdicts.items() if not v.accepted]
        if bad:
            row.reason = "; ".join(f"{t}: {v.reason}" for t, v in bad)
            return row
        t = measure(model.handlers[task], max_batch, **timing)
        row.latency_ms_p50, row.throughput_per_s, row.accepted = t.latency_ms_p50, t.throughput_per_s, True
    except Exception as exc:  # a candidate that fails to build or run is refused, the others still measured
        log.warning("optimize: candidate %s failed on %s: %r", cand.name, base.name, exc)
        row.reason = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
    finally:
        if model is base:
            base.backend, base.weight_bytes = None, weight_bytes
        else:
            del model
            gc.collect()
    return row
