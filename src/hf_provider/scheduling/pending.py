"""`Pending`: one model's queue and the counts kept with it, under one condition variable.

The stages take batches from it (scheduling/stages.py, scheduling/continuous.py), admission reads it
(scheduling/admit.py), and settlement gives back to it (scheduling/batcher.py): the one shared state of a
scheduler, so each of those is a collaborator holding this object rather than a mixin reading its host's fields.
"""

from __future__ import annotations

import threading

from hf_provider.scheduling.queue import BatchQueue
from hf_provider.scheduling.request import Request


class Pending:
    def __init__(self, queue: BatchQueue) -> None:
        self.queue = queue
        self.cv = threading.Condition()  # an RLock underneath: settlement may run while a stage holds it
        self.closed = False
        self.in_flight = 0  # the one count of accepted, unsettled requests
        self.next_deadline = float("inf")  # the earliest deadline among queued requests
        self.device_busy = False  # set by the forward stage around each batch
        self.last_arrival = 0.0
        self.running_items = 0  # items of batches taken and not yet resolved or failed
        self.in_flight_tasks: dict[str, int] = {}  # accepted, unsettled requests per task (views and metrics)

    def __len__(self) -> int:
        return len(self.queue)

    def push(self, req: Request, now: float) -> None:
        """Queue an admitted request (caller holds `cv`)."""
        self.queue.push(req, now)
        self.last_arrival = now
        self.in_flight += 1
        task = req.handler.task
        self.in_flight_tasks[task] = self.in_flight_tasks.get(task, 0) + 1
        self.next_deadline = min(self.next_deadline, req.deadline)
        self.cv.notify()

    def settled(self, req: Request) -> None:
        """A queued request ended: its items leave the queue and it no longer counts as in flight."""
        with self.cv:
            if req.slots:
                self.queue.remove(req)
            self.in_flight -= 1
            self.in_flight_tasks[req.handler.task] -= 1
            self.cv.notify()

    def expire_due(self, now: float) -> None:
        """Settle queued requests whose deadline passed (caller holds `cv`; a no-op until the earliest is due)."""
        if now < self.next_deadline:
            return
        earliest = float("inf")
        for req in self.queue.requests():
            if now >= req.deadline:
                req.expire(now)  # settlement takes it out of the queue (the condition's lock is re-entrant)
            else:
                earliest = min(earliest, req.deadline)
        self.next_deadline = earliest

    def running_done(self, n: int) -> None:
        with self.cv:
            self.running_items -= n

    def set_busy(self, busy: bool) -> None:
        with self.cv:
            self.device_busy = busy
            if not busy:
                self.cv.notify_all()

    def close(self) -> None:
        with self.cv:
            self.closed = True
            self.cv.notify_all()
