"""Background work that steps aside for forward passes: the GIL between a swap's load and the requests it serves.

A swap loads the candidate revision on the server's own CPU while the serving version keeps answering, and the
load competes with the forward passes for the cores and for the GIL. On CPU a forward pass is a few hundred torch
ops, each computed on every core (OpenMP) with the GIL released and the GIL taken back before the next one; a
loader thread running Python (`from_pretrained` is mostly Python: module construction, weight conversion, the
tokenizer) holds the GIL in between and takes a core from the op's team. A MiniLM batch took 2-3x as long while a
load of the same model ran beside it. Measured and not enough: a load at nice 19 on a thread of the server (a
low-priority thread holding the GIL waits for a core while requests wait for it), a load in a child process (the
cores are still shared; handing the weights back needs shared memory). CPython's GIL has no priorities and
neither torch nor transformers offers a cooperative load, so this is done by hand: the forward stages count the
passes running (`forward_pass()`), and a thread inside `yield_to_forwards()` checks that count at each Python call
it makes (a trace function, `sys.settrace`, on that thread only) and waits, without the GIL, while a pass runs. The
load then runs in the gaps between passes (the event loop's parsing and serialization, the collect and post
stages), which leave the cores partly idle even under load.

A background thread is never starved: after `max_wait_s` of waiting in all it runs freely for `slice_s`, so on a
model that is busy without a gap it still progresses at slice/(wait + slice) of its own speed.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

MAX_WAIT_S = 0.05  # waited in all before a background thread gets a free slice
SLICE_S = 0.01

TraceFn = Callable[[FrameType, str, Any], Any]


class Foreground:
    """How many forward passes run in this process, and a way to wait until none does."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        # read without the lock on the tracer's fast path: a stale read costs one call's wait, or one call
        self._running = 0
        self._cv = threading.Condition()
        self._local = threading.local()  # this thread's (gate, the trace function it replaced) while yielding

    @property
    def busy(self) -> bool:
        return self._running > 0

    @contextmanager
    def forward_pass(self) -> Iterator[None]:
        with self._cv:
            self._running += 1
        try:
            yield
        finally:
            with self._cv:
                self._running -= 1
                if self._running == 0:
                    self._cv.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Block (GIL released) until no forward pass runs, at most `timeout`; whether none runs."""
        with self._cv:
            return self._cv.wait_for(lambda: self._running == 0, timeout)

    @contextmanager
    def yield_to_forwards(
        self, max_wait_s: float = MAX_WAIT_S, slice_s: float = SLICE_S
    ) -> Iterator[YieldStats]:
        """Python code this thread runs in the block waits while a forward pass runs (see the module's doc).
        A trace function already set on the thread (a debugger, coverage) keeps receiving every event."""
        stats = YieldStats()
        previous: TraceFn | None = sys.gettrace()
        waited = 0.0
        free_until = 0.0

        def gate(frame: FrameType, event: str, arg: Any) -> Any:
            nonlocal waited, free_until
            if self._running and event == "call":
                now = self.clock()
                if now >= free_until:
                    idle = self.wait_idle(max_wait_s - waited)
                    after = self.clock()
                    waited += after - now
                    stats.waits += 1
                    stats.waited_s += after - now
                    if not idle:  # the wait ran out: starved for max_wait_s in all, so a free slice
                        waited = 0.0
                        free_until = after + slice_s
                        stats.slices += 1
            return previous(frame, event, arg) if previous is not None else None

        outer = getattr(self._local, "gate", None)
        self._local.gate = (gate, previous)
        sys.settrace(gate)
        try:
            yield stats
        finally:
            sys.settrace(previous)
            self._local.gate = outer

    @contextmanager
    def undisturbed(self) -> Iterator[None]:
        """Inside `yield_to_forwards`, a section that must not wait: a timing measurement (optimize="auto"
        at load), whose waits would be measured as the model's speed and cached as such."""
        active = getattr(self._local, "gate", None)
        if active is None or sys.gettrace() is not active[0]:
            yield
            return
        sys.settrace(active[1])
        try:
            yield
        finally:
            sys.settrace(active[0])


class YieldStats:
    """What a `yield_to_forwards` block waited: logged by the loader, asserted by the tests."""

    __slots__ = ("slices", "waited_s", "waits")

    def __init__(self) -> None:
        self.waits = 0
        self.waited_s = 0.0
        self.slices = 0


FOREGROUND = Foreground()  # the process's one: every scheduler's forward stage reports to it
