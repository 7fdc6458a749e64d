"""How many CPU threads a model's forward passes use (the spec's `cpu_threads`), set per scheduler thread.

torch's intra-op count is OpenMP's, which is per OS thread: `torch.set_num_threads` in a model's forward thread
changes that thread's team only. It also changes the value torch gives threads started later, so `use_threads`
sets that back; in library mode the application's own threads keep the process's count.

`StepThreads` chooses for continuous decoding (`cpu_threads = "auto"`): a decoding step is a few small matrix
products per token, where an OpenMP team pays a fork and a barrier per operation and stalls whenever one of its
threads is descheduled (on a small CPU the HTTP, tokenizing and settling threads take turns on the same cores).
So on the model's first steps it times one thread against the process's count, step against step at the same
number of rows, and keeps one thread unless one is clearly slower (a tiny T5 on 2 cores: the same speed alone,
and 1.5-1.7x a flood's throughput under load; t5-small alone: 1.6x slower on one thread, so it keeps both).
Written here because threadpoolctl sets a library's count without torch's per-thread bookkeeping, which resets
a thread's team on its first parallel operation.
"""

from __future__ import annotations

import logging
import statistics
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

log = logging.getLogger(__name__)

_lock = threading.Lock()
_process: int | None = None


def process_threads() -> int:
    """The process's intra-op count, as it was before this module first set a thread's own."""
    global _process
    with _lock:
        if _process is None:
            _process = torch.get_num_threads()
        return _process


def use_threads(n: int) -> None:
    """The calling thread runs its forward passes on `n` threads; other threads, and those started later, keep
    the process's count."""
    default = process_threads()
    with _lock:
        # torch sets a thread's count from the process-wide value on its first parallel operation; reading the
        # count does that now, so it cannot undo `n` later.
        torch.get_num_threads()
        torch.set_num_threads(n)
        if n != default:
            # torch keeps the last count set as the one new threads start from: set it back from a thread that
            # ends at once (its own team does not matter), so only the calling thread runs on `n`.
            t = threading.Thread(target=torch.set_num_threads, args=(default,), name="hfp-threads-reset")
            t.start()
            t.join()


class ThreadSetting:
    """Applies a count to whichever thread runs a loop: a supervised loop restarted on a new thread sets it again.
    `apply` is `use_threads`, replaced in tests."""

    def __init__(self, apply: Callable[[int], None] = use_threads) -> None:
        self._apply = apply
        self.applied: tuple[int, int] | None = None  # (thread id, count) last applied

    def ensure(self, n: int) -> None:
        key = (threading.get_ident(), n)
        if self.applied != key:
            self._apply(n)
            self.applied = key


@dataclass
class ThreadChoice:
    """What `StepThreads` decided, for the admin view and the log."""

    threads: int | None = None  # None until the first measurement ends
    how: str = "measuring"
    ratios: list[float] = field(default_factory=list)  # per pair: the step's time on 1 thread / on the count
    measures: int = 0  # measurements ended (the first, then one every RECHECK_STEPS steps)


class StepThreads:
    """The thread count for each decoding step of one model (its engine thread calls `before` and `after` around
    a step). `setting`: an int, or "auto" to measure as the module says; `device`: nothing to choose off the CPU.
    The best count moves with the machine's load (a count that wins on an idle CPU loses when clients and other
    models take cores), so it is measured again every RECHECK_STEPS steps."""

    WARM_STEPS = 4  # the first steps touch lazy kernels and memory: not timed
    PAIRS = 8  # pairs of steps (same rows, one on each count) before it decides
    TOLERANCE = 1.15  # one thread is kept while at most this much slower than the count
    GIVE_UP_STEPS = 400  # too few comparable pairs by then (rows change every step): keep the count in use
    RECHECK_STEPS = 1000  # steps between measurements (a measurement's 16 steps: about 1% of them)

    def __init__(
        self,
        setting: int | Literal["auto"],
        *,
        device: str = "cpu",
        name: str = "",
        default: int | None = None,
        apply: Callable[[int], None] = use_threads,
    ) -> None:
        self.name = name
        self.default = default if default is not None else process_threads()
        self._threads = ThreadSetting(apply)
        self.choice = ThreadChoice()
        self.fixed = True
        self._leave = False  # the process count, never changed: the thread's count is left as torch starts it
        if isinstance(setting, int):
            self.choice = ThreadChoice(setting, "configured")
        elif device != "cpu" or self.default <= 1:
            self.choice = ThreadChoice(self.default, "process count")
            self._leave = True
        else:
            self.fixed = False
        self.measuring = not self.fixed
        self._steps = 0  # steps since the measurement (or the wait for the next) began
        self._last: tuple[int, int, float] | None = None  # (rows, threads, seconds) of an open pair
        self._next = self.default

    @property
    def touched(self) -> bool:
        """Whether this loop has set its thread's count."""
        return self._threads.applied is not None

    @property
    def current(self) -> int:
        return self.choice.threads or self.default

    def use(self, n: int) -> None:
        """The calling thread runs on `n` threads for work that is not a decoding step (another task's batch)."""
        self._threads.ensure(n)

    def before(self, rows: int) -> int:
        """Sets and returns the count the coming step of `rows` rows runs on."""
        if self._leave:
            return self.default
        if not self.measuring or (self.choice.measures == 0 and self._steps < self.WARM_STEPS):
            n = self.current
        elif self._last is not None and self._last[0] == rows:
            n = 1 if self._last[1] != 1 else self.default  # the pair's other half
        else:
            # a pair's first half alternates, so a trend over steps (longer sequences) favours neither count
            n = 1 if len(self.choice.ratios) % 2 else self.default
        self._next = n
        self._threads.ensure(n)
        return n

    def after(self, rows: int, seconds: float) -> None:
        if self.fixed:
            return
        self._steps += 1
        if not self.measuring:
            if self._steps >= self.RECHECK_STEPS:
                self.measuring, self._steps, self._last, self.choice.ratios = True, 0, None, []
            return
        if self.choice.measures == 0 and self._steps <= self.WARM_STEPS:
            return
        n, last = self._next, self._last
        if last is not None and last[0] == rows and last[1] != n:
            one, many = (seconds, last[2]) if n == 1 else (last[2], seconds)
            if many > 0:
                self.choice.ratios.append(one / many)
            self._last = None
        else:
            self._last = (rows, n, seconds)
        if len(self.choice.ratios) >= self.PAIRS:
            ratio = statistics.median(self.choice.ratios)
            threads = 1 if ratio <= self.TOLERANCE else self.default
            self._decided(threads, f"measured: 1 thread took {ratio:.2f}x the time of {self.default}")
        elif self._steps >= self.GIVE_UP_STEPS:
            self._decided(self.current, "kept: too few comparable steps to measure")

    def _decided(self, threads: int, how: str) -> None:
        if threads != self.choice.threads:
            log.info("%s: decoding steps run on %d CPU thread(s) (%s)", self.name, threads, how)
        self.choice.threads, self.choice.how = threads, how
        self.choice.measures += 1
        self.measuring, self._steps, self._last = False, 0, None
