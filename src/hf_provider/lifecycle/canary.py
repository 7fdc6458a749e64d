"""Canary: a candidate revision takes a fixed share of a model's requests, with outcomes counted per revision
and an automatic abort when the candidate fails clearly more often than the primary.

The split is counter-based, not random: request n goes to the candidate when floor((n+1) p) > floor(n p) (p the
share), so any run of 100 requests sends exactly `percent` of them to the candidate. Tests and operators see the
configured share, never a random draw's spread. `itertools.count` is atomic under the GIL: one `next()` per
request is the whole cost on the request path.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hf_provider.lifecycle.version import Version
from hf_provider.resilience.breaker import OPEN
from hf_provider.types import Outcome

_FAILED = ("error", "timed_out")  # the server's fault; rejections (overload) and cancellations are not judged


@dataclass
class Counts:
    """Outcomes of one revision's requests since the canary started."""

    outcomes: dict[str, int] = field(default_factory=dict)
    latency_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, outcome: str, latency_s: float) -> None:
        with self._lock:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            self.latency_s += latency_s

    @property
    def failed(self) -> int:
        return sum(self.outcomes.get(o, 0) for o in _FAILED)

    @property
    def judged(self) -> int:
        return self.outcomes.get("ok", 0) + self.failed

    @property
    def error_rate(self) -> float:
        return self.failed / self.judged if self.judged else 0.0

    def describe(self) -> dict[str, Any]:
        with self._lock:
            total = sum(self.outcomes.values())
            return {
                "requests": total,
                "outcomes": dict(self.outcomes),
                "error_rate": round(self.error_rate, 4),
                "mean_latency_ms": round(1000 * self.latency_s / total, 2) if total else None,
            }


def abort_reason(candidate: Counts, primary: Counts, margin: float, min_requests: int) -> str | None:
    """Why the candidate should be dropped, or None. Pure: judged only once the candidate answered
    `min_requests` requests (an early failure or two is noise)."""
    if candidate.judged < min_requests:
        return None
    c, p = candidate.error_rate, primary.error_rate
    if c > p + margin:
        return (
            f"candidate error rate {c:.1%} over {candidate.judged} requests exceeds the primary's {p:.1%} by "
            f"more than {margin:.1%}"
        )
    return None


class Splitter:
    """Sends `percent` of calls to the candidate, exactly per 100 calls (see the module's docstring)."""

    def __init__(self, percent: float) -> None:
        if not 0 < percent < 100:
            raise ValueError(f"percent must be between 0 and 100 (exclusive), got {percent}")
        self.percent = percent
        self._bp = round(percent * 100)  # basis points: 0.01% resolution in integer arithmetic
        self._n = itertools.count()

    def candidate(self) -> bool:
        n = next(self._n)
        return (n + 1) * self._bp // 10000 > n * self._bp // 10000


class Tally:
    """A scheduler's outcome listener while a canary runs (observability/outcomes.py): counts each settled
    request of one revision, then lets the canary judge."""

    def __init__(self, counts: Counts, after: Callable[[], None]) -> None:
        self.counts = counts
        self._after = after

    def __call__(self, outcome: Outcome) -> None:
        self.counts.add(outcome.outcome, outcome.latency_s)
        self._after()


class Canary:
    """The state of one model's canary, read by the Provider on every request of that model (`route`)."""

    def __init__(
        self,
        candidate: Version,
        primary_commit: str | None,
        percent: float,
        *,
        margin: float,
        min_requests: int,
        on_abort: Callable[[str], None],
    ) -> None:
        self.candidate = candidate
        self.split = Splitter(percent)
        self.primary_commit = primary_commit
        self.primary = Counts()
        self.cand = Counts()
        self.listening: list[Callable[[], None]] = []  # the Tallies on both schedulers (controller.py)
        self.margin, self.min_requests = margin, min_requests
        self._on_abort = on_abort
        self._aborting = False
        self._lock = threading.Lock()

    def route(self, primary: Any, task: str) -> Any:
        """The scheduler that serves this request: the candidate's for its share (when it serves the task).
        A candidate whose circuit breaker opened refuses before its scheduler counts anything, so that alone
        aborts the canary and its share goes to the primary."""
        if self.split.candidate():
            sched = self.candidate.entry.scheduler
            if sched is not None and task in sched.model.handlers:
                breaker = sched.breaker
                if breaker is None or breaker.state != OPEN:
                    return sched
                self._trip("the candidate's circuit breaker opened")
        return primary

    def judge(self) -> None:
        """After each counted request: start the automatic abort once (on another thread: this runs where a
        request is settled, and the abort stops the candidate's scheduler threads)."""
        if self._aborting:
            return
        why = abort_reason(self.cand, self.primary, self.margin, self.min_requests)
        if why is not None:
            self._trip(why)

    def _trip(self, why: str) -> None:
        with self._lock:
            if self._aborting:
                return
            self._aborting = True
        threading.Thread(target=self._on_abort, args=(why,), name="hfp-canary-abort", daemon=True).start()

    def describe(self) -> dict[str, Any]:
        return {
            "percent": self.split.percent,
            "candidate": {**self.candidate.describe(), "stats": self.cand.describe()},
            "primary": {"commit": self.primary_commit, "stats": self.primary.describe()},
            "abort_margin": self.margin,
            "min_requests": self.min_requests,
        }
