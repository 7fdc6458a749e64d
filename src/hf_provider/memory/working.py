"""Working memory by the batch: reserved from the model's pool for the forward pass, from the batch's real shape.

A model is admitted with its weights plus the working memory of one input of the longest length it takes (so any
single input can always run beside it); a batch reserves what it needs beyond that, estimated from its rows and
padded length (memory.estimate.working_bytes), for as long as its forward pass runs. So a 160 MB classifier is no
longer admitted as 1 GB for a worst-case batch it may never see, and models share what is left of the budget for
their batches as they run. The batcher caps a batch's padded tokens (`token_cap`) so a batch always fits beside its
own model; when the pool is short because other models hold it, idle ones are evicted (the manager's policy), else
the batch waits for other batches to end, and past `wait_s` it is refused as out of memory, which the scheduler's
recovery answers by splitting it (memory.oom.run_with_recovery): halves need less, and a single input needs
nothing beyond the model's own admission.

Accounting only: the bytes are reserved in the same Accountant as the weights (under "<model>#batch"), so the
budget's bound (accounted bytes never above it) covers running batches too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hf_provider.memory.budget import Accountant

_released = threading.Condition()  # any model's batch ended: waiting batches try again


class BatchBudgetExceeded(MemoryError):
    """A batch's working memory could not be reserved in time: the OOM recovery splits it (a MemoryError)."""


def token_cap(room: int, per_item_at_max: int, max_length: int) -> int:
    """Most padded tokens in one batch so that it fits in `room` bytes beside its model: the working memory per
    token is highest at the longest length (attention grows with it), so that rate bounds every shape."""
    if per_item_at_max <= 0:
        return max_length
    return max(max_length, room // per_item_at_max * max_length)


class BatchMemory:
    """Reserves one model's running batch's working memory (one forward pass at a time per model)."""

    def __init__(
        self,
        accountant: Accountant,
        pool: str,
        model: str,
        working: Callable[[int, int, str], int],
        admitted: int,
        *,
        make_room: Callable[[int], bool] | None = None,
        wait_s: float = 1.0,
    ) -> None:
        self.accountant = accountant
        self.pool = pool
        self.key = f"{model}#batch"
        self.working = working  # (rows, padded length, task) -> bytes for one forward pass
        self.admitted = admitted  # working bytes already admitted with the model (one longest input)
        self.make_room = make_room  # evict idle models for `n` bytes; True when something was freed
        self.wait_s = wait_s
        self.waited = 0  # batches that had to wait for memory, for tests and the admin view
        self.refused = 0

    def need(self, rows: int, length: int, task: str) -> int:
        return max(0, self.working(rows, length, task) - self.admitted)

    @contextmanager
    def hold(self, rows: int, length: int, task: str) -> Iterator[int]:
        need = self.need(rows, length, task)
        if need == 0:
            yield 0
            return
        self._reserve(need)
        try:
            yield need
        finally:
            self.accountant.release(self.key, self.pool)
            with _released:
                _released.notify_all()

    def _reserve(self, need: int) -> None:
        deadline = time.monotonic() + self.wait_s
        waited = False
        while not self.accountant.reserve(self.key, self.pool, need):
            free = self.accountant.free(self.pool) or 0
            if self.make_room is not None and self.make_room(need - free):
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.refused += 1
                raise BatchBudgetExceeded(
                    f"out of memory budget: a batch needs {need} working bytes in {self.pool}, {free} are free"
                )
            if not waited:
                waited, self.waited = True, self.waited + 1
            with _released:
                _released.wait(min(remaining, 0.05))
