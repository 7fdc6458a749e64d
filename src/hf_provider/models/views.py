"""What the model manager shows: the admin view of every entry, and the figures metrics read at scrape time.

A mixin of `ModelManager` (manager.py), which owns the entries and their lock; read-only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hf_provider.isolation.runners import runner_view

if TYPE_CHECKING:
    from hf_provider.memory.budget import Accountant
    from hf_provider.models.manager import Entry


class ManagerViews:
    # Set by ModelManager.__init__.
    _lock: threading.RLock
    _entries: dict[str, Entry]
    accountant: Accountant
    clock: Callable[[], float]

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            out = []
            for name, e in self._entries.items():
                info: dict[str, Any] = {
                    "name": name,
                    "source": e.spec.source,
                    "revision": e.spec.revision,
                    "commit": None,
                    "device": e.spec.device,
                    "dtype": e.spec.dtype,
                    "tasks": e.spec.tasks,
                    "weight_bytes": None,
                }
                if e.model is not None:
                    info.update(e.model.info())
                info.update(
                    {
                        "state": e.state,
                        "queued": e.scheduler.queue_depth if e.scheduler else 0,
                        "in_flight": e.in_flight,
                        # The admission estimate (weights + working memory of a full batch), what the budget
                        # holds (measured weights + that working estimate), and the working memory measured at
                        # the peak of a forward pass since load: estimates and measurements are kept apart.
                        "estimated_bytes": e.estimated_bytes,
                        "accounted_bytes": e.accounted_bytes,
                        "working_bytes_estimated": e.working_bytes or None,
                        "working_bytes_peak": e.scheduler.peak_working_bytes if e.scheduler else None,
                        "last_used": _wall(e.last_used, self.clock),
                        "pinned": e.spec.pinned,
                        "priority": e.spec.priority,
                        "keep_alive": e.spec.keep_alive,
                        "loads": e.loads,
                        "error": e.error,
                        "quantization": e.spec.quantization,
                        "quantization_cosine": e.quantization_cosine,
                        "breaker": self._breaker_view(e),
                        "isolation": e.spec.isolation,
                        "pid": None,
                        "restarts": 0,
                    }
                )
                if e.scheduler is not None:  # the worker's pid and restarts; state "failed" (isolation.py)
                    info.update(runner_view(e.scheduler.runner))
                out.append(info)
            return out

    def _breaker_view(self, e: Entry) -> dict[str, Any] | None:
        breaker = e.scheduler.breaker if e.scheduler else None
        if breaker is None:
            return None
        view = breaker.describe()
        if view["opened_at"] is not None:
            view["opened_at"] = _wall(view["opened_at"], self.clock)
        return view

    def in_flight_by_model(self) -> dict[str, int]:
        """Requests accepted and not finished, per loaded model (read by metrics at scrape time)."""
        with self._lock:
            return {n: e.in_flight for n, e in self._entries.items() if e.scheduler is not None}

    def queued_items(self) -> int:
        """Items waiting in every loaded model's queue (read without the lock: a snapshot is enough)."""
        return sum(e.scheduler.queue_depth for e in list(self._entries.values()) if e.scheduler is not None)

    def model_bytes(self) -> dict[str, dict[str, int | None]]:
        """Per loaded model: actual weight bytes and the bytes accounted against the budget (weights + working)."""
        with self._lock:
            return {
                n: {"weight_bytes": e.model.weight_bytes, "accounted_bytes": e.accounted_bytes}
                for n, e in self._entries.items()
                if e.model is not None
            }

    def memory_view(self) -> dict[str, Any]:
        snap = self.accountant.snapshot()
        host = snap["pools"].get("host", {})
        view: dict[str, Any] = {
            "host_budget_bytes": host.get("budget_bytes"),
            "host_used_bytes": host.get("used_bytes", 0),
        }
        gpus = {p: v for p, v in snap["pools"].items() if p.startswith("cuda:")}
        if gpus:
            view["gpus"] = {
                p: {"budget_bytes": v["budget_bytes"], "used_bytes": v["used_bytes"]} for p, v in gpus.items()
            }
        view["pools"] = snap["pools"]
        return view


def _wall(mono: float, clock: Callable[[], float]) -> float | None:
    """Convert a monotonic timestamp to wall-clock seconds for display."""
    return None if not mono else time.time() - (clock() - mono)
