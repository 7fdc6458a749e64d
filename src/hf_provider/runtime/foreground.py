"""Background work that steps aside for forward passes: the GIL between a swap's load and the requests it serves.

A swap loads the candidate revision on the server's own CPU while the serving version keeps answering, and the
load competes with the forward passes for the cores and for the GIL. On CPU a forward pass is a few hundred torch
ops, each computed on every core (OpenMP) with the GIL released and the GIL taken back before the next one; a
loader thread running Python (`from_pretrained` is mostly Python: module construction, weight conversion) holds
the GIL in between and takes a core from the op's team. A MiniLM batch took 2-3x as long while a load of the same
model ran beside it. Measured and not enough: a load at nice 19 (a low-priority thread holding the GIL waits for a
core while requests wait for it), a load in a child process (the cores are still shared; handing the weights back
needs shared memory). CPython's GIL has no priorities and neither torch nor transformers offers a cooperative
load, so this is done by hand: the forward stages count the passes running (`forward_pass()`), and a thread
inside `yield_to_forwards()` waits, without the GIL, at each `yield_point()` it reaches while a pass runs. The load
then runs in the gaps between passes (the event loop's parsing and serialization, the collect and post stages),
which leave the cores partly idle even under load.

The yield points are explicit, so the wait happens only where the loader holds no lock another thread needs (never
under `ModelManager._lock`, which the event loop's submit takes) and nothing process-wide is replaced (an earlier
version gated every Python call with `sys.settrace`, which removed a debugger's tracer and stalled the event loop
when it waited under the manager's lock). Inside the block torch calls one back at every module, parameter and
buffer registration, which is how `from_pretrained` builds a model (modules on the meta device, then one
`setattr` per loaded tensor): a MiniLM load reaches ~340 of them, 0.1 ms apart on average and 5 ms at most
(transformers renaming the checkpoint's keys before the first tensor). The loader adds points between its steps
(runtime/loader.py, the manager's handler builds). transformers' weight-copy pool threads are outside the block and
do not wait. The three torch hooks are global: registered by the first block and kept (removing one while another
thread iterates torch's hook dict would fail that thread's module construction); for any thread outside a block
they are one thread-local lookup per registration.

Not on CUDA (lifecycle/loading.py passes enabled=False): a pass there computes on the device, so a loader thread
takes little from it, and with continuous batching a pass is almost always running, so the load would only crawl.

A background thread is never starved: after `max_wait_s` of waiting in all it runs freely for `slice_s`, so on a
model that is busy without a gap it still progresses at slice/(wait + slice) of its own speed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch.nn.modules import module as torch_module

MAX_WAIT_S = 0.05  # waited in all before a background thread gets a free slice
SLICE_S = 0.01


class Foreground:
    """How many forward passes run in this process, and a way for background work to wait until none does."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        # read without the lock at each yield point: a stale read costs one point's wait, or one point
        self._running = 0
        self._cv = threading.Condition()

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
        """Block (GIL and every lock released) until no forward pass runs, at most `timeout`; whether none runs."""
        with self._cv:
            return self._cv.wait_for(lambda: self._running == 0, timeout)

    @contextmanager
    def yield_to_forwards(
        self, *, enabled: bool = True, max_wait_s: float = MAX_WAIT_S, slice_s: float = SLICE_S
    ) -> Iterator[YieldStats]:
        """This thread's yield points in the block wait while a forward pass runs; `enabled=False` (the
        `[versioning] yield_to_requests` setting, or a CUDA model) makes the block change nothing."""
        stats = YieldStats()
        if not enabled:
            yield stats
            return
        outer = getattr(_thread, "gate", None)
        _thread.gate = _Gate(self, stats, max_wait_s, slice_s)
        _hook_torch()
        try:
            yield stats
        finally:
            _thread.gate = outer

    @contextmanager
    def undisturbed(self) -> Iterator[None]:
        """Inside `yield_to_forwards`, a section that must not wait: a timing measurement (optimize="auto"
        at load), whose waits would be measured as the model's speed and cached as such."""
        gate = getattr(_thread, "gate", None)
        _thread.gate = None
        try:
            yield
        finally:
            _thread.gate = gate


class _Gate:
    """One `yield_to_forwards` block: its waits so far and the end of its free slice."""

    __slots__ = ("fg", "free_until", "max_wait_s", "slice_s", "stats", "waited")

    def __init__(self, fg: Foreground, stats: YieldStats, max_wait_s: float, slice_s: float) -> None:
        self.fg, self.stats = fg, stats
        self.max_wait_s, self.slice_s = max_wait_s, slice_s
        self.waited = 0.0  # since the last free slice
        self.free_until = float("-inf")

    def wait(self) -> None:
        fg = self.fg
        now = fg.clock()
        if now < self.free_until:
            return
        idle = fg.wait_idle(max(0.0, self.max_wait_s - self.waited))
        after = fg.clock()
        self.waited += after - now
        self.stats.waits += 1
        self.stats.waited_s += after - now
        if not idle:  # the wait ran out: starved for max_wait_s in all, so a free slice
            self.waited = 0.0
            self.free_until = after + self.slice_s
            self.stats.slices += 1


class YieldStats:
    """What a `yield_to_forwards` block waited: logged by the loader, asserted by the tests."""

    __slots__ = ("slices", "waited_s", "waits")

    def __init__(self) -> None:
        self.waits = 0
        self.waited_s = 0.0
        self.slices = 0


_thread = threading.local()  # .gate: this thread's _Gate inside yield_to_forwards
_hooks_lock = threading.Lock()
_hooked = False


def yield_point() -> None:
    """Inside `yield_to_forwards`, wait here while a forward pass runs (see the module's doc); elsewhere, or with
    no pass running, return at once. Call it only where this thread holds no lock that a request's path (the
    event loop, a stage thread) takes."""
    gate = getattr(_thread, "gate", None)
    if gate is not None and gate.fg.busy:
        gate.wait()


def _hook(*_: Any) -> None:
    yield_point()


def _hook_torch() -> None:
    """Torch's registration hooks, from the first block on: yield points inside module construction and weight
    loading, which have no hook of their own."""
    global _hooked
    with _hooks_lock:
        if not _hooked:
            torch_module.register_module_module_registration_hook(_hook)
            torch_module.register_module_parameter_registration_hook(_hook)
            torch_module.register_module_buffer_registration_hook(_hook)
            _hooked = True


FOREGROUND = Foreground()  # the process's one: every scheduler's forward stage reports to it
