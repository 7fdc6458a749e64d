"""The one backoff policy: how long to wait before trying again after a failure that may repeat.

Used for a failed model load (models/manager.py: 1, 2, 4... 30 s), a dead worker process (isolation/procworker.py:
0.25 s... 30 s) and a dead server under `hfp serve` (resilience/respawn.py: 0.5 s... 30 s). Each failure of a
streak doubles the wait from `first` up to `cap`; a streak ends on `succeeded()`, or when the thing had run for
`reset_s` before it failed (a crash a day is not a crash loop).

The curve is tenacity's `wait_exponential` (overflow-safe: a streak of thousands stays at `cap`), but the streak
is kept here: tenacity's state lives inside one retry loop around one call, while these failures are separate
events minutes apart on other threads. No jitter: none of the callers has a crowd of peers retrying in step (one
load per model at a time, one process per worker), which is what jitter is for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import tenacity


class Backoff:
    """Pure policy, lock-guarded, with an injected clock (only read when `reset_s` is set and no `ran_s` given)."""

    def __init__(
        self,
        first: float = 1.0,
        cap: float = 30.0,
        reset_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if first < 0 or cap < first:
            raise ValueError(f"backoff needs 0 <= first <= cap (got first={first}, cap={cap})")
        self.first, self.cap, self.reset_s, self.clock = first, cap, reset_s, clock
        self._curve = tenacity.wait_exponential(multiplier=first, max=cap)
        # tenacity's wait strategies read only `attempt_number` from their state: one reused object, set per call
        self._state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        self._lock = threading.Lock()
        self.streak = 0  # failures in a row
        self._started = clock()

    def started(self) -> None:
        """The thing (re)started now: a failure `reset_s` or more from now begins a new streak."""
        with self._lock:
            self._started = self.clock()

    def failed(self, ran_s: float | None = None) -> float:
        """Record a failure; returns the seconds to wait before the next try. `ran_s`: how long it had run, when
        the caller measured it on a clock of its own (default: since `started()`)."""
        with self._lock:
            if self.reset_s is not None:
                ran = self.clock() - self._started if ran_s is None else ran_s
                if ran >= self.reset_s:
                    self.streak = 0  # it ran long enough: this failure starts a new streak
            self.streak += 1
            self._state.attempt_number = self.streak
            return float(self._curve(self._state))

    def succeeded(self) -> None:
        """A try worked: the next failure waits `first` again."""
        with self._lock:
            self.streak = 0
