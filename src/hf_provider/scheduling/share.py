"""Weighted fair share between the tasks of one model (start-time fair queueing over items served).

Each task has a virtual time: the items served to it divided by its share. The next batch (or the next
continuous-batching row) goes to the task with work queued whose virtual time is lowest, so while several tasks
have work queued each gets items in proportion to its share, and a task alone gets everything. A task that
becomes backlogged starts at the lowest virtual time among the backlogged ones: idle time banks no credit (else a
task idle for an hour would then own the model until it caught up). Pure bookkeeping; the queue calls it under
its lock. Hand-written: it is twenty lines over the queue's own data, and no scheduling library models tasks
sharing one set of weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class FairShare:
    def __init__(self, shares: Mapping[str, int] | None = None) -> None:
        self.shares = dict(shares or {})
        self.vtime: dict[str, float] = {}

    def share(self, task: str) -> int:
        return self.shares.get(task, 1)

    def backlogged(self, task: str, others: Iterable[str]) -> None:
        """`task` has work queued again; `others` are the tasks that already had some."""
        floor = min((self.vtime.get(t, 0.0) for t in others if t != task), default=None)
        if floor is not None:
            self.vtime[task] = max(self.vtime.get(task, 0.0), floor)
        else:
            self.vtime.setdefault(task, 0.0)

    def pick(self, heads: Mapping[str, float]) -> str:
        """The task to serve next among those with work queued (`heads`: task -> its oldest item's arrival)."""
        return min(heads, key=lambda t: (self.vtime.get(t, 0.0), heads[t]))

    def served(self, task: str, items: int) -> None:
        self.vtime[task] = self.vtime.get(task, 0.0) + items / self.share(task)

    def fair_slots(self, slots: int, tasks: Iterable[str]) -> dict[str, float]:
        """Each of `tasks` (those with work) and its fair part of `slots` rows, by share."""
        ts = list(dict.fromkeys(tasks))
        total = sum(self.share(t) for t in ts) or 1
        return {t: slots * self.share(t) / total for t in ts}
