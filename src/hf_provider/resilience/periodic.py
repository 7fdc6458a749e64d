"""`Periodic`: one supervised background thread that runs a few actions, each at its own interval: the one
background writer of the SQLite stores (the observer's request history and resource samples, the reporter's error
groups, their retention).

Written here rather than with `sched` or a thread per action: the actions share one stop event (a close flushes
once, after the thread is gone), one failure policy (logged, counted in `hfp_internal_errors_total` under the
action's component, retried at its next turn: ARCHITECTURE.md rules 8-9) and an injectable clock for tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from hf_provider.resilience.supervisor import Supervisor

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Task:
    interval_s: float
    component: str
    action: Callable[[], object]
    due: float


class Periodic:
    def __init__(
        self,
        name: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self.supervisor: Supervisor | None = None  # given at start: failures are counted there
        self.on_error = on_error  # counted when no supervisor is given
        self._tasks: list[_Task] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def every(
        self, interval_s: float, component: str, action: Callable[[], object], *, first_s: float = 0.0
    ) -> None:
        """Run `action` every `interval_s` seconds, the first time `first_s` after start."""
        if not interval_s > 0:
            raise ValueError(f"{component}: the interval must be positive, got {interval_s}")
        self._tasks.append(_Task(float(interval_s), component, action, first_s))

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, supervisor: Supervisor | None = None) -> None:
        if self._thread is not None or self._stop.is_set():
            return
        self.supervisor = supervisor
        now = self.clock()
        for t in self._tasks:
            t.due = now + t.due
        self._thread = threading.Thread(target=self._loop, name=f"hfp-{self.name}", daemon=True)
        self._thread.start()

    def run_due(self) -> float:
        """Run every action that is due now; returns the time the next one is due (the loop's step, and the
        tests' with a fake clock)."""
        now = self.clock()
        for t in self._tasks:
            if now >= t.due:
                self.run(t.component, t.action)
                while t.due <= now:
                    t.due += t.interval_s
        return min((t.due for t in self._tasks), default=now + 1.0)

    def run(self, component: str, action: Callable[[], object]) -> None:
        """One run of an action: a failure is logged and counted, never raised."""
        if self.supervisor is not None:
            with self.supervisor.guard(component):
                action()
            return
        try:
            action()
        except Exception:
            log.exception("%s: %s failed; retrying at its next turn", self.name, component)
            if self.on_error is not None:
                self.on_error(component)

    def _loop(self) -> None:
        while not self._stop.is_set():
            due = self.run_due()
            self._stop.wait(max(0.01, due - self.clock()))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (the caller's final flush runs after it, on the caller's thread)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
