"""A circuit breaker per loaded model: a small lock-guarded state machine with an injected clock.

    closed --(`failures` consecutive failures)--> open --(cool-down passed)--> half_open
    half_open --(`probes` probes succeeded)--> closed;   half_open --(a probe failed)--> open

`allow()` is the check before a request is queued: it returns a `Ticket` (go ahead) or the seconds left of the
cool-down (refuse at once, for Retry-After). The ticket's verdict comes later, from another thread, when the
request is settled (scheduling/batcher.py `_on_settle`): `record(ticket, success)`, or `release(ticket)` when
the request ended without a verdict (cancelled, timed out, refused at admission, failed parsing). A half-open
breaker hands out exactly `probes` tickets; a released probe ticket goes back, or a probe whose caller left would
keep the breaker half-open forever. Tickets carry the breaker's generation: the verdict of a request admitted
before the last transition (an old slow request failing while half-open) is ignored.

Why not a library: pybreaker (sync; its async support is Tornado's), aiobreaker (its asyncio port) and purgatory
(async and sync factories) all judge a call they wrap themselves (`call(fn)`, a decorator or a context manager)
by the exception it raises, on the thread that made it, and keep their state in their own storage. Here the
check (the provider, before parsing, on the event loop or a worker thread) and the verdict (the post-stage thread
that settles the request, or a cancelling caller) are split across threads and time, a request may end with no
verdict at all (its probe ticket must go back), and the verdict depends on our outcome and error hierarchy, not
on "did it raise". Wrapping that in a library's call shape would cost more code than these few lines of state,
kept next to the scheduler as Ray Serve keeps its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hf_provider import errors as E

CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"
STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}  # the metrics gauge's values

# Errors that say nothing about the model's health: the client's own mistakes (4xx), refusals before any work,
# callers that left, deadlines that passed in the queue, and the breaker's own refusals.
_NOT_THE_MODELS = (
    E.InvalidInput,
    E.TaskNotSupported,
    E.ModelNotFound,
    E.Overloaded,
    E.ShuttingDown,
    E.Cancelled,
    E.DeadlineExceeded,
)


def verdict(outcome: str, error: BaseException | None) -> bool | None:
    """The breaker's reading of a settled request: True (success), False (a failure of the model's own making:
    a 5xx class such as an internal error, an out-of-memory recovery could not fix, a device error, a crashed
    worker) or None (no verdict: the ticket is given back)."""
    if outcome == "ok":
        return True
    if outcome != "error" or error is None or isinstance(error, _NOT_THE_MODELS):
        return None
    return False


@dataclass(frozen=True, slots=True)
class Ticket:
    generation: int
    probe: bool


class Breaker:
    """Thread-safe; `failures = 0` disables it (every request is admitted, nothing is counted)."""

    def __init__(
        self,
        failures: int = 5,
        cooldown_s: float = 30.0,
        probes: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, str], None] | None = None,
    ) -> None:
        if failures < 0:
            raise ValueError(f"breaker failures must be >= 0 (0 disables the breaker), got {failures}")
        if cooldown_s < 0:
            raise ValueError(f"breaker cooldown must be >= 0 seconds, got {cooldown_s}")
        if probes < 1:
            raise ValueError(f"breaker probes must be >= 1, got {probes}")
        self.threshold = failures
        self.cooldown_s = float(cooldown_s)
        self.probes = probes
        self.clock = clock
        self.on_change = on_change  # (old, new) state, called outside the lock; must not raise
        self._lock = threading.Lock()
        self._state = CLOSED
        self._generation = 0
        self._failures = 0  # consecutive failures while closed
        self._opened_at: float | None = None
        self._tickets_out = 0  # probe tickets handed out and not settled (half-open only)
        self._probe_successes = 0
        self.openings = 0

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def allow(self) -> Ticket | float:
        """A ticket to go ahead, or the seconds left before a probe may be tried (> 0)."""
        if not self.enabled:
            return Ticket(0, False)
        changed = None
        with self._lock:
            now = self.clock()
            if self._state == OPEN:
                assert self._opened_at is not None
                left = self._opened_at + self.cooldown_s - now
                if left > 0:
                    return float(left)
                changed = self._move(HALF_OPEN)
            if self._state == CLOSED:
                return Ticket(self._generation, False)
            # half-open: exactly `probes` tickets out at a time
            if self._tickets_out >= self.probes:
                return self._probe_wait()
            self._tickets_out += 1
            ticket = Ticket(self._generation, True)
        self._notify(changed)
        return ticket

    def record(self, ticket: Ticket, success: bool) -> None:
        """The verdict of a request admitted with `ticket`."""
        if not self.enabled:
            return
        changed = None
        with self._lock:
            if ticket.generation != self._generation:
                return  # admitted before the last transition: says nothing about the state now
            if self._state == CLOSED:
                if success:
                    self._failures = 0
                else:
                    self._failures += 1
                    if self._failures >= self.threshold:
                        changed = self._move(OPEN)
            elif self._state == HALF_OPEN and ticket.probe:
                self._tickets_out -= 1
                if not success:
                    changed = self._move(OPEN)
                else:
                    self._probe_successes += 1
                    if self._probe_successes >= self.probes:
                        changed = self._move(CLOSED)
        self._notify(changed)

    def release(self, ticket: Ticket) -> None:
        """The request ended without a verdict: give a probe ticket back (a no-op for other tickets)."""
        if not ticket.probe:
            return
        with self._lock:
            if ticket.generation == self._generation and self._state == HALF_OPEN:
                self._tickets_out -= 1

    def settle(self, ticket: Ticket, outcome: str, error: BaseException | None) -> None:
        """record() or release() by the settled request's outcome (see `verdict`)."""
        v = verdict(outcome, error)
        if v is None:
            self.release(ticket)
        else:
            self.record(ticket, v)

    @property
    def state(self) -> str:
        """The state now (an open breaker whose cool-down passed reads half_open)."""
        with self._lock:
            return self._state_now()

    def describe(self) -> dict[str, Any]:
        """For GET /v1/admin/models: state, consecutive failures, when it opened (this clock), seconds left."""
        with self._lock:
            state = self._state_now()
            left = None
            if state == OPEN and self._opened_at is not None:
                left = max(0.0, self._opened_at + self.cooldown_s - self.clock())
            return {
                "state": state if self.enabled else "disabled",
                "failures": self._failures,
                "opened_at": self._opened_at,
                "retry_after_s": left,
                "openings": self.openings,
            }

    # internals (under the lock) ---------------------------------------------------------------------------------
    def _state_now(self) -> str:
        due = self._opened_at is not None and self.clock() >= self._opened_at + self.cooldown_s
        return HALF_OPEN if self._state == OPEN and due else self._state

    def _probe_wait(self) -> float:
        # The probes out will answer within a request's time; a short hint keeps clients from hammering.
        return max(1.0, min(self.cooldown_s, 5.0))

    def _move(self, new: str) -> tuple[str, str]:
        old = self._state
        self._state = new
        self._generation += 1
        self._tickets_out = 0
        self._probe_successes = 0
        if new == OPEN:
            self._opened_at = self.clock()
            self.openings += 1
        elif new == CLOSED:
            self._failures = 0
            self._opened_at = None
        return old, new

    def _notify(self, changed: tuple[str, str] | None) -> None:
        if changed is not None and self.on_change is not None:
            self.on_change(*changed)
