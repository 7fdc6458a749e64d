"""The one recorder of request outcomes (`types.Outcome`).

Every end of a request (settled by its scheduler) and every refusal before a request existed (the Provider's and
the server's) becomes one Outcome handed to `Recorder.record`, and everything that needs to know how requests end
listens here: metrics and history (observability/observer.py), error reports (reporting/reporter.py), traces, a
model's breaker, keep-alive, a canary's tally. None of them keeps bookkeeping of its own, so a request is counted
once whichever way it ended and whichever layer refused it.

A scheduler has its own recorder for what belongs to one loaded version (its breaker, keep-alive, a canary's
tally) whose records go on to the Provider's (metrics, reports, traces). Listeners are called through the
supervisor: one that raises is logged and counted, never breaks the request path (ARCHITECTURE.md rule 9).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from hf_provider.resilience.supervisor import Supervisor
from hf_provider.types import Outcome, OutcomeListener


class Recorder:
    def __init__(self, supervisor: Supervisor | None = None, parent: Recorder | None = None) -> None:
        self.supervisor = supervisor or Supervisor()
        self.parent = parent
        # Copy on write: `record` reads the tuple without a lock (it runs for every request on stage threads).
        self._listeners: tuple[tuple[str, OutcomeListener], ...] = ()
        self._lock = threading.Lock()

    def listen(self, component: str, listener: OutcomeListener) -> Callable[[], None]:
        """Call `listener(outcome)` for every record from now on; returns the call that stops it. `component`
        names it in logs and `hfp_internal_errors_total` when it raises."""
        entry = (component, listener)
        with self._lock:
            self._listeners = (*self._listeners, entry)

        def stop() -> None:
            with self._lock:
                self._listeners = tuple(x for x in self._listeners if x is not entry)

        return stop

    def record(self, outcome: Outcome) -> None:
        for component, listener in self._listeners:
            self.supervisor.call(component, listener, outcome)
        if self.parent is not None:
            self.parent.record(outcome)


def observer_listener(observer: object) -> OutcomeListener | None:
    """The listener of an observer: its `outcome` hook if it has one, else its `request_done` (the Observer's,
    observability/observer.py, and test doubles) with the record's fields; None when it has neither."""
    hook = getattr(observer, "outcome", None)
    if callable(hook):
        return hook
    done = getattr(observer, "request_done", None)
    if not callable(done):
        return None

    def listener(o: Outcome) -> None:
        error_type = None if o.error is None else type(o.error).__name__
        done(o.model, o.task, o.revision, o.outcome, o.latency_s, o.items, o.tokens, error_type)

    return listener
