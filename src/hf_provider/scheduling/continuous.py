"""The scheduler's side of continuous batching: one supervised thread (`generate/M`) that feeds the model's
`GenerationEngine` (runtime/continuous) from the queue and runs its steps.

It replaces the collect / forward / post stages for a model with an engine: between two steps it takes as many
queued items as the engine has free slots (service order, any parameters; deadlines expired first), so a request
joins the running batch at the next token, and each row answers its own request item (`item_done`) the step it
ends. Admission, priorities, deadlines and settlement stay the scheduler's; a cancelled or timed-out request's
rows leave at the next step (the engine asks `stop_reason` before each). A request for another task of the same
model (the engine does not take it) runs through the stage runner inline, as one batch. A failed step fails the
rows it held with the real error (each request settled once) and the loop goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hf_provider.reporting.reports import tag
from hf_provider.resilience.supervisor import Supervisor
from hf_provider.runtime.foreground import FOREGROUND
from hf_provider.scheduling.completion import Completion
from hf_provider.scheduling.observer import SchedulerObserver
from hf_provider.scheduling.pending import Pending
from hf_provider.scheduling.preempt import Hold, RowView, decide
from hf_provider.scheduling.queue import Batch, Slot
from hf_provider.scheduling.threads import StepThreads
from hf_provider.types import GenerationEngine

if TYPE_CHECKING:
    from hf_provider.scheduling.worker import StageRunner

log = logging.getLogger(__name__)

# At most this many steps in a row may a smaller share's queued items wait while a larger share's rows run
# (scheduling/preempt.py): a 32-token row then loses at most a third of its own decoding time to it, and an
# 8-token interactive row (most of a translation or a chat turn's first sentence) steps alone-fast to its end.
HOLD_STEPS = 12


class _RequestRow:
    """A `types.GenRow`: one item of a request, running in the engine."""

    __slots__ = ("_loop", "ended", "paused_at", "rid", "slot", "started", "waited")

    def __init__(self, loop: ContinuousLoop, slot: Slot, started: float) -> None:
        self._loop = loop
        self.slot = slot
        self.started = started
        self.ended = False  # counted out of the running items (once, however the row ends)
        self.rid: int | None = None  # the engine's id for it (a pausable engine's rows are tracked by it)
        self.waited = max(0.0, started - slot.enqueued)  # seconds waited so far: queued, then paused
        self.paused_at: float | None = None

    def view(self, now: float) -> RowView:
        req = self.slot.request
        assert self.rid is not None
        waited = self.waited + (now - self.paused_at if self.paused_at is not None else 0.0)
        return RowView(self.rid, req.handler.task, req.priority, req.submitted, waited)

    def paused(self, now: float, paused: bool) -> None:
        if paused and self.paused_at is None:
            self.paused_at = now
        elif not paused and self.paused_at is not None:
            self.waited += now - self.paused_at
            self.paused_at = None

    @property
    def streaming(self) -> bool:
        return self.slot.request.streaming

    def emit(self, delta: str) -> None:
        self.slot.request.emit(delta, self._loop.clock())

    def stop_reason(self) -> str | None:
        reason = self.slot.request.stop_reason(self._loop.clock())
        if reason is not None:
            self._loop.row_ended(self, ok=False)
        return reason

    def generated(self) -> None:
        self.slot.request.generated += 1

    def finish(self, result: Any) -> None:
        self._loop.row_ended(self, ok=True)
        self.slot.request.item_done(self.slot.index, result, self._loop.clock())

    def fail(self, error: BaseException) -> None:
        self._loop.row_ended(self, ok=False)
        self.slot.request.fail(error, self._loop.clock())


class ContinuousLoop:
    def __init__(
        self,
        name: str,
        engine: GenerationEngine,
        pending: Pending,
        completion: Completion,
        runner: StageRunner,
        *,
        observer: SchedulerObserver,
        supervisor: Supervisor,
        clock: Callable[[], float],
        yield_always: bool = False,
        preempt_for_share: bool = False,
        threads: StepThreads | None = None,
        static_threads: int | None = None,
    ) -> None:
        """`yield_always`: batch rows pause while interactive ones run (the model's `yield_to_interactive`);
        `threads` chooses each step's CPU thread count, `static_threads` is the count for inline batches."""
        self.name = name
        self.engine = engine
        self.pending = pending
        self.completion = completion
        self.runner = runner
        self.observer = observer
        self.supervisor = supervisor
        self.clock = clock
        self.yield_always = yield_always
        self.preempt_for_share = preempt_for_share  # the model sets task shares: rows pause to honour them
        self.rows: dict[int, _RequestRow] = {}  # a pausable engine's rows by id (scheduling/preempt.py)
        self.held: dict[tuple[int, str], int] = {}  # steps in a row each queue has waited to join late
        # without `threads` (tests): the process count, never measured
        self.threads = threads or StepThreads("auto", device="other")
        self.static_threads = static_threads  # None: the process count

    def start(self) -> list[threading.Thread]:
        n = self.name
        return [self.supervisor.spawn(f"generate/{n}", self.run_once, name=f"hfp-generate-{n}")]

    def run_once(self) -> bool:
        engine = self.engine
        take, urgent_only, hold = self._preempt(engine) if self.rows else (engine.free_slots, False, Hold())
        slots = self._take_rows(take, idle=not engine.busy, urgent_only=urgent_only, hold=hold)
        if slots is None:
            return False
        now = self.clock()
        inline: list[Slot] = []
        for s in slots:
            req = s.request
            if not req.mark_running():
                self.pending.running_done(1)
            elif not engine.accepts(req.handler):
                inline.append(s)
            else:
                row = _RequestRow(self, s, now)
                try:
                    rid = engine.add_item(req.handler, s.item, req.params, row)
                except Exception as e:  # a row that cannot fit a slot: its request fails, the others go on
                    self.pending.running_done(1)
                    req.fail(e, now)
                    continue
                if getattr(engine, "pausable", False) and not row.ended:
                    row.rid = rid
                    self.rows[rid] = row
        if inline:
            self._run_inline(inline)
        if engine.busy:
            self._step(engine)
        return True

    def _preempt(self, engine: Any) -> tuple[int, bool, Hold]:
        """Pause and resume rows (scheduling/preempt.py); returns how many queued items to take, whether only
        urgent ones, and the queues that wait this step."""
        with self.pending.cv:
            queued = self.pending.queue.waiting()
            share = self.pending.queue.share
            aging = self.pending.queue.aging_s
        paused = set(engine.paused)
        now = self.clock()
        views = [r.view(now) for r in self.rows.values()]
        d = decide(
            [v for v in views if v.rid not in paused],
            [v for v in views if v.rid in paused],
            queued,
            slots=engine.slots,
            always=self.yield_always,
            share=share,
            aging_s=aging,
            by_share=self.preempt_for_share,
            held=self.held,
            hold_steps=HOLD_STEPS,
        )
        # a queue that waited this step counts one more; any other starts again at 0
        self.held = {k: self.held.get(k, 0) + 1 for k, n in queued.items() if n and k in d.hold}
        for rid in d.pause:
            engine.pause(rid)
            self.rows[rid].paused(now, True)
        for rid in d.resume:
            engine.resume(rid)
            self.rows[rid].paused(now, False)
        return min(d.take, engine.free_slots), d.urgent_only, d.hold

    def _take_rows(
        self, free: int, *, idle: bool, urgent_only: bool = False, hold: Hold | None = None
    ) -> list[Slot] | None:
        """Up to `free` queued items; waits for work only while the engine is idle. None: closed and drained."""
        p = self.pending
        with p.cv:
            while True:
                if len(p.queue) and free > 0:
                    now = self.clock()
                    p.expire_due(now)
                    slots = p.queue.take_first(now, free, urgent_only=urgent_only, hold=hold or Hold())
                    if slots and hold and len(slots) < free:
                        # A prefill runs this step anyway: as many waiting items join it (a prefill of a
                        # few rows costs far less than a few of one, and at most doubles this one's).
                        more = min(len(slots), free - len(slots))
                        slots += p.queue.take_first(now, more, urgent_only=urgent_only)
                    if slots:
                        p.running_items += len(slots)
                        depth = len(p.queue)
                        break
                    if not idle:
                        return []  # only bulk or smaller-share work waits while rows run: it waits for them
                    urgent_only, hold = False, None  # nothing runs: whatever waits is served
                    continue
                if not idle:
                    return []
                if p.closed:
                    return None
                p.cv.wait()
        self.supervisor.call("observer", self.observer.queue_depth, self.name, depth)
        return slots

    def _step(self, engine: GenerationEngine) -> None:
        # the rows this step computes (paused ones not)
        rows = getattr(engine, "slots", 0) - engine.free_slots
        self.threads.before(rows)
        t0 = time.perf_counter()
        try:
            # Injected faults (TESTING ONLY, resilience/faults.py) reach a step as they reach a static forward.
            if (faults := getattr(self.runner, "faults", None)) is not None:
                faults.check(self.name, "forward")
            with FOREGROUND.forward_pass():
                made = engine.step(self.completion.tokens_counter("text-generation"))
        except Exception as e:
            tag(e, "forward", len(getattr(engine, "rows", ())))
            log.warning("a generation step of %s failed: %s", self.name, type(e).__name__)
            engine.abort(e)
            return
        dt = time.perf_counter() - t0
        self.threads.after(rows, dt)
        if made:
            self.completion.counted(made)
            self.supervisor.call(
                "observer",
                self.observer.batch_done,
                self.name,
                "text-generation",
                made,
                made,
                0.0,
                0.0,
                dt,
                0.0,
                None,
            )

    def row_ended(self, row: _RequestRow, *, ok: bool) -> None:
        if row.ended:
            return
        row.ended = True
        if row.rid is not None:
            self.rows.pop(row.rid, None)
        self.pending.running_done(1)
        if ok:
            self.completion.rate.observe(1, row.started, self.clock())

    def _run_inline(self, slots: list[Slot]) -> None:
        """Items the engine does not take (another task of the model): one batch per request, through the
        stage runner as the static stages would run it."""
        groups: dict[int, list[Slot]] = {}
        for s in slots:
            groups.setdefault(id(s.request), []).append(s)
        if self.static_threads is not None:
            self.threads.use(self.static_threads)
        elif self.threads.touched:
            self.threads.use(self.threads.default)  # decoding set its own count: batches run on the process's
        for group in groups.values():
            req = group[0].request
            batch = Batch(slots=group, handler=req.handler, params=req.params, formed_at=self.clock())
            batch.started = batch.decided = batch.formed_at
            batch.counted = len(group)
            try:
                self.runner.preprocess(batch)
                with FOREGROUND.forward_pass():
                    self.runner.forward(batch, self.completion.control(group))
                results = self.runner.postprocess(batch)
            except Exception as e:
                self.completion.fail(batch, e)
                continue
            self.completion.resolve(batch, results)
