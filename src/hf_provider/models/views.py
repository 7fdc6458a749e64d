"""What the model manager shows: the admin view of every entry, and the figures metrics read at scrape time.

`ModelManager.snapshot()` copies its entries into plain frozen values under its lock (`take`); the views here are
pure functions of that snapshot, so no view holds the lock while it formats, and each can be tested on a
hand-built snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hf_provider.isolation.runners import runner_view
from hf_provider.spec import ModelSpec

if TYPE_CHECKING:
    from hf_provider.memory.budget import Accountant
    from hf_provider.models.entry import Entry


@dataclass(frozen=True)
class ModelState:
    """One entry as the snapshot saw it: copied values, times on the wall clock, nothing live."""

    name: str
    spec: ModelSpec
    state: str
    loaded: Mapping[str, Any] | None  # LoadedModel.info() while weights are in
    weight_bytes: int | None
    scheduled: bool  # a scheduler exists (loaded, or failed with its worker down)
    queued: int
    in_flight: int
    estimated_bytes: int | None
    accounted_bytes: int
    working_bytes: int
    working_peak: int | None
    last_used: float | None
    loads: int
    error: str | None
    quantization_cosine: float | None
    breaker: Mapping[str, Any] | None
    runner: Mapping[str, Any]  # isolation/runners.runner_view: pid, restarts, state "failed"
    # Per task with work: queued, in_flight, share, priority (scheduling/batcher.task_load).
    task_load: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    batches: tuple[int, int] = (0, 0)  # batches run since load, and those holding several requests' items
    cpu_threads: Mapping[str, Any] | None = None  # scheduling/batcher.cpu_threads


@dataclass(frozen=True)
class Snapshot:
    models: tuple[ModelState, ...]
    pools: Mapping[str, Mapping[str, Any]]  # the accountant's pools: budget / used / reserved / ... bytes


def take(
    entries: Iterable[tuple[str, Entry]], accountant: Accountant, clock: Callable[[], float]
) -> Snapshot:
    """The snapshot of `entries`; the caller holds the lock that guards them."""
    return Snapshot(tuple(_state(n, e, clock) for n, e in entries), accountant.snapshot()["pools"])


def _state(name: str, e: Entry, clock: Callable[[], float]) -> ModelState:
    sched, model = e.scheduler, e.model
    breaker = sched.breaker.describe() if sched is not None and sched.breaker is not None else None
    if breaker is not None and breaker["opened_at"] is not None:
        breaker["opened_at"] = _wall(breaker["opened_at"], clock)
    return ModelState(
        name=name,
        spec=e.spec,
        state=state_of(e.state, e.error),
        loaded=model.info() if model is not None else None,
        weight_bytes=model.weight_bytes if model is not None else None,
        scheduled=sched is not None,
        queued=sched.queue_depth if sched is not None else 0,
        in_flight=e.in_flight,
        task_load=sched.task_load() if sched is not None else {},
        estimated_bytes=e.estimated_bytes,
        accounted_bytes=e.accounted_bytes,
        working_bytes=e.working_bytes,
        working_peak=sched.peak_working_bytes if sched is not None else None,
        last_used=_wall(e.last_used, clock),
        loads=e.loads,
        error=e.error,
        quantization_cosine=e.quantization_cosine,
        breaker=breaker,
        runner=runner_view(sched.runner) if sched is not None else {},
        batches=(sched.batches, sched.shared_batches) if sched is not None else (0, 0),
        cpu_threads=sched.cpu_threads() if sched is not None else None,
    )


def state_of(state: str, error: str | None) -> str:
    """The state every view shows: "failed" (with its error) for a model not serving because its last load
    failed; the entry itself stays "unloaded", so the next load (an admin's, or after the backoff) may start and
    clears the error when it succeeds. A fatal device error shows "failed" too (isolation/runners.py)."""
    return "failed" if state == "unloaded" and error is not None else state


def describe(snap: Snapshot) -> list[dict[str, Any]]:
    """The admin view of every model (GET /v1/admin/models), in configuration order."""
    out = []
    for m in snap.models:
        spec = m.spec
        info: dict[str, Any] = {
            "name": m.name,
            "source": spec.source,
            "revision": spec.revision,
            "commit": None,
            "device": spec.device,
            "dtype": spec.dtype,
            "tasks": spec.tasks,
            "weight_bytes": None,
        }
        info.update(m.loaded or {})
        info.update(
            {
                "state": m.state,
                "queued": m.queued,
                "in_flight": m.in_flight,
                # Per task (several tasks share this model's weights): queued items, requests in flight, the
                # share and default priority it is scheduled with (task_share / task_priority in the spec).
                "tasks_load": {t: dict(v) for t, v in m.task_load.items()},
                "task_share": dict(spec.task_share),
                "task_priority": dict(spec.task_priority),
                "cpu_threads": dict(m.cpu_threads or {}) or None,
                "batches": m.batches[0],
                "shared_batches": m.batches[1],
                # The admission estimate (weights + working memory of a full batch), what the budget holds
                # (measured weights + that working estimate), and the working memory measured at the peak of a
                # forward pass since load: estimates and measurements are kept apart.
                "estimated_bytes": m.estimated_bytes,
                "accounted_bytes": m.accounted_bytes,
                "working_bytes_estimated": m.working_bytes or None,
                "working_bytes_peak": m.working_peak,
                "last_used": m.last_used,
                "pinned": spec.pinned,
                "priority": spec.priority,
                "keep_alive": spec.keep_alive,
                "loads": m.loads,
                "error": m.error,
                "quantization": spec.quantization,
                "quantization_cosine": m.quantization_cosine,
                "breaker": dict(m.breaker) if m.breaker is not None else None,
                "isolation": spec.isolation,
                "pid": None,
                "restarts": 0,
            }
        )
        info.update(m.runner)  # the worker's pid and restarts; state "failed" with its error (isolation/)
        out.append(info)
    return out


def in_flight_by_model(snap: Snapshot) -> dict[str, int]:
    """Requests accepted and not finished, per model with a scheduler (read by metrics at scrape time)."""
    return {m.name: m.in_flight for m in snap.models if m.scheduled}


def queued_items(snap: Snapshot) -> int:
    """Items waiting in every loaded model's queue."""
    return sum(m.queued for m in snap.models)


def model_bytes(snap: Snapshot) -> dict[str, dict[str, int | None]]:
    """Per loaded model: actual weight bytes and the bytes accounted against the budget (weights + working)."""
    return {
        m.name: {"weight_bytes": m.weight_bytes, "accounted_bytes": m.accounted_bytes}
        for m in snap.models
        if m.loaded is not None
    }


def memory_view(snap: Snapshot) -> dict[str, Any]:
    """Host and GPU budgets against their use, and every pool's ledger."""
    host = snap.pools.get("host", {})
    view: dict[str, Any] = {
        "host_budget_bytes": host.get("budget_bytes"),
        "host_used_bytes": host.get("used_bytes", 0),
    }
    gpus = {p: v for p, v in snap.pools.items() if p.startswith("cuda:")}
    if gpus:
        view["gpus"] = {
            p: {"budget_bytes": v["budget_bytes"], "used_bytes": v["used_bytes"]} for p, v in gpus.items()
        }
    view["pools"] = {p: dict(v) for p, v in snap.pools.items()}
    return view


def _wall(mono: float, clock: Callable[[], float]) -> float | None:
    """Convert a monotonic timestamp to wall-clock seconds for display."""
    return None if not mono else time.time() - (clock() - mono)
