"""The per-model queue of request items and batch formation (pure data structure, no threads).

Batches are formed around an *anchor*: the oldest item, in the most urgent priority class, of the task whose turn
it is by weighted fair share (scheduling/share.py), so every item makes progress in order within its task.
Compatible items (same batch key) within a window after the anchor are sorted by length and the batch is the run
of similar lengths around the anchor, bounded by item count and padded tokens: sorting limits padding (TEI and
infinity do the same), anchoring keeps FIFO order within a task.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hf_provider.scheduling.request import Request
from hf_provider.scheduling.share import FairShare
from hf_provider.types import PRIORITIES, Item, TaskHandler


@dataclass(slots=True, eq=False)
class Slot:
    request: Request
    index: int
    enqueued: float
    queued: bool = True

    @property
    def item(self) -> Item:
        return self.request.items[self.index]


@dataclass(slots=True)
class Batch:
    slots: list[Slot]
    handler: TaskHandler
    params: dict[str, Any]
    formed_at: float
    started: float = 0.0  # when its preprocessing began (service-rate measurement)
    decided: float | None = None  # when the forward stage took it (batch latency)
    counted: int = 0  # items the scheduler counts as running for this batch, until it is done
    data: Any = None  # preprocess output
    outputs: Any = None  # forward output
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.slots)

    @property
    def padded_tokens(self) -> int:
        return max((s.item.n_tokens for s in self.slots), default=0) * len(self.slots)


class BatchQueue:
    """Not thread-safe on its own: the scheduler guards it with its condition variable.

    One deque per (priority class, task): the anchor class is picked by priority and aging, then the task within
    it by weighted fair share (scheduling/share.py), then that task's oldest item is the anchor."""

    def __init__(
        self,
        *,
        max_batch_size: int,
        max_batch_tokens: int,
        aging_s: float = 2.0,
        window_factor: int = 4,
        shares: Mapping[str, int] | None = None,
    ) -> None:
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.aging_s = aging_s
        self.window = max_batch_size * window_factor
        self.share = FairShare(shares)
        self._classes: list[dict[str, deque[Slot]]] = [{} for _ in PRIORITIES]
        self._len = 0
        self._per_task: dict[str, int] = {}  # queued items per task, all classes

    def __len__(self) -> int:
        return self._len

    def class_len(self, priority: int) -> int:
        return sum(len(q) for q in self._classes[priority].values())

    def task_counts(self) -> dict[str, int]:
        """Queued items per task (tasks with none are left out)."""
        return {t: n for t, n in self._per_task.items() if n}

    def waiting(self) -> dict[tuple[int, str], int]:
        """Queued items per (priority class, task)."""
        return {(c, t): len(q) for c, cls in enumerate(self._classes) for t, q in cls.items() if q}

    def push(self, request: Request, now: float) -> None:
        slots = [Slot(request, i, now) for i in range(len(request.items))]
        request.slots = slots
        task = request.handler.task
        if not self._per_task.get(task):
            self.share.backlogged(task, self.task_counts())
        self._classes[request.priority].setdefault(task, deque()).extend(slots)
        self._len += len(slots)
        self._per_task[task] = self._per_task.get(task, 0) + len(slots)

    def _taken(self, slot: Slot) -> None:
        slot.queued = False
        self._len -= 1
        self._per_task[slot.request.handler.task] -= 1

    def remove(self, request: Request) -> int:
        """Take a request's still-queued items out (it was settled while queued). Returns how many."""
        q = self._classes[request.priority].get(request.handler.task)
        n = 0
        for s in request.slots:
            if s.queued and q is not None:
                q.remove(s)  # identity comparison (eq=False) in C: cheap even for a long queue
                self._taken(s)
                n += 1
        return n

    def _slots(self, priority: int) -> list[Slot]:
        """A class's items, oldest first across its tasks."""
        qs = [q for q in self._classes[priority].values() if q]
        if len(qs) == 1:
            return list(qs[0])
        return sorted((s for q in qs for s in q), key=lambda s: s.enqueued)

    def requests(self) -> list[Request]:
        """Each queued request once, oldest first within each priority class."""
        seen: dict[int, Request] = {}
        for c in range(len(self._classes)):
            for s in self._slots(c):
                seen.setdefault(id(s.request), s.request)
        return list(seen.values())

    def generation_tokens(self) -> int:
        """The token budget of the queued items of generation requests: each item's n_tokens, which the
        generative handlers size as prompt + max_new_tokens (the Ray autoscaling signal, scaling/policy.py)."""
        return sum(
            s.item.n_tokens
            for c in self._classes
            for q in c.values()
            for s in q
            if s.request.handler.generative
        )

    def _head(self, c: int, hold: Container[tuple[int, str]] = ()) -> Slot | None:
        heads = [q[0] for t, q in self._classes[c].items() if q and (c, t) not in hold]
        return min(heads, key=lambda s: s.enqueued) if heads else None

    def _anchor_class(self, now: float, hold: Container[tuple[int, str]] = ()) -> int | None:
        # The batch class is served first only when its head has waited past aging_s, so bulk work cannot
        # starve interactive work, yet is not starved by it either.
        heads = [(i, h) for i in range(len(self._classes)) if (h := self._head(i, hold)) is not None]
        if not heads:
            return None
        for i, head in heads[1:]:
            if now - head.enqueued >= self.aging_s and head.enqueued < heads[0][1].enqueued:
                return i
        return heads[0][0]

    def _next_in(self, c: int, hold: Container[tuple[int, str]] = ()) -> Slot:
        """The next item of class `c` by fair share between its tasks (the class holds some not in `hold`)."""
        heads = {t: q[0].enqueued for t, q in self._classes[c].items() if q and (c, t) not in hold}
        task = next(iter(heads)) if len(heads) == 1 else self.share.pick(heads)
        return self._classes[c][task][0]

    def oldest(self, now: float) -> Slot | None:
        """The anchor of the next batch (the name predates fair share: the oldest item of the task served next)."""
        c = self._anchor_class(now)
        return self._next_in(c) if c is not None else None

    def compatible_count(self, key: Hashable, limit: int) -> int:
        n = 0
        for c in self._classes:
            for q in c.values():
                for s in q:
                    if s.request.key == key:
                        n += 1
                        if n >= limit:
                            return n
        return n

    def take(self, now: float) -> list[Slot]:
        """Remove and return the next batch's slots (possibly empty if the queue is empty)."""
        c = self._anchor_class(now)
        if c is None:
            return []
        anchor = self._next_in(c)
        key = anchor.request.key
        candidates: list[Slot] = []
        for ci in [c] + [i for i in range(len(self._classes)) if i != c]:
            for s in self._slots(ci):
                if s.request.key == key:
                    candidates.append(s)
                    if len(candidates) >= self.window:
                        break
            if len(candidates) >= self.window:
                break
        chosen = self._around_anchor(anchor, candidates)
        picked = {id(s) for s in chosen}
        for cls in self._classes:
            for task, q in cls.items():
                if any(id(s) in picked for s in q):
                    cls[task] = deque(s for s in q if id(s) not in picked)
        for s in chosen:
            self._taken(s)
            self.share.served(s.request.handler.task, 1)
        return chosen

    def take_first(
        self, now: float, n: int, *, urgent_only: bool = False, hold: Container[tuple[int, str]] = ()
    ) -> list[Slot]:
        """Remove and return up to `n` items in service order (the anchor class first, tasks by fair share,
        oldest first within a task), whatever their parameters: continuous batching runs rows of any parameters
        side by side. `urgent_only`: interactive items and batch items that waited past aging_s only; `hold`:
        (priority class, task) queues that wait this time (scheduling/preempt.py)."""
        out: list[Slot] = []
        while len(out) < n:
            c = self._anchor_class(now, hold)
            if c is None:
                break
            s = self._next_in(c, hold)
            if urgent_only and c > 0 and now - s.enqueued < self.aging_s:
                break
            self._classes[c][s.request.handler.task].popleft()
            self._taken(s)
            self.share.served(s.request.handler.task, 1)
            out.append(s)
        return out

    def _around_anchor(self, anchor: Slot, candidates: list[Slot]) -> list[Slot]:
        ordered = sorted(candidates, key=lambda s: s.item.n_tokens)
        pos = next(i for i, s in enumerate(ordered) if s is anchor)
        lo = hi = pos  # inclusive window [lo, hi] grown toward the neighbour closest in length
        longest = anchor.item.n_tokens

        def fits(n: int, longest_tokens: int) -> bool:
            return n <= self.max_batch_size and (n == 1 or n * longest_tokens <= self.max_batch_tokens)

        while True:
            left = ordered[lo - 1] if lo > 0 else None
            right = ordered[hi + 1] if hi + 1 < len(ordered) else None
            if left is None and right is None:
                break
            n = hi - lo + 2
            go_right = right is not None and (
                left is None
                or right.item.n_tokens - anchor.item.n_tokens <= anchor.item.n_tokens - left.item.n_tokens
            )
            if go_right:
                if not fits(n, max(longest, right.item.n_tokens)):
                    if left is None or not fits(n, longest):
                        break
                    lo -= 1
                    continue
                hi += 1
                longest = max(longest, right.item.n_tokens)
            else:
                if not fits(n, longest):
                    break
                lo -= 1
        return ordered[lo : hi + 1]
