"""`ModelScheduler`: dynamic batching for one loaded model, composed of collaborators that each own one part:

    Pending (the queue and its counts)  Admission (refusal by time and count)  Completion (a batch's end)
    StaticStages (collect | forward | post threads)  or  ContinuousLoop (one `generate` thread with an engine)

Every request is a `Request` owned by this scheduler and settled exactly once (scheduling/request.py);
`_settle` is the one place a settled request is accounted for: it releases the in-flight count, takes its items
out of the queue, and hands one `types.Outcome` to the scheduler's recorder (observability/outcomes.py), where its
breaker, keep-alive, a canary's tally and, through the Provider's recorder, metrics, history, error reports and
traces listen. A request refused at the door is raised, not recorded: the Provider records its refusals.
"""

from __future__ import annotations

import atexit
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hf_provider.observability.outcomes import Recorder
from hf_provider.resilience.supervisor import Supervisor
from hf_provider.scheduling.admit import Admission
from hf_provider.scheduling.completion import Completion
from hf_provider.scheduling.continuous import ContinuousLoop
from hf_provider.scheduling.mixed import trunk_batch_key
from hf_provider.scheduling.observer import NullObserver, SchedulerObserver
from hf_provider.scheduling.pending import Pending
from hf_provider.scheduling.queue import BatchQueue
from hf_provider.scheduling.request import Request
from hf_provider.scheduling.shedding import ServiceRate
from hf_provider.scheduling.stages import StaticStages
from hf_provider.scheduling.threads import StepThreads, process_threads
from hf_provider.types import DeltaSink, GenerationEngine, Item, Outcome, TaskHandler

if TYPE_CHECKING:
    from hf_provider.resilience.breaker import Breaker
    from hf_provider.runtime.model import LoadedModel
    from hf_provider.scheduling.worker import StageRunner

GENERATION_WAIT_S = 0.050  # longest a generation batch follows a burst of arrivals

#: Schedulers not closed yet, stopped at interpreter exit (below).
_open: weakref.WeakSet[ModelScheduler] = weakref.WeakSet()


@atexit.register
def _stop_at_exit() -> None:
    """A program that ends (or dies of an uncaught exception) without closing its Provider: stop the stage
    threads before the interpreter finalizes. A daemon thread still inside a torch call then would take the
    process down with "terminate called without an active exception" (SIGABRT) instead of a clean exit."""
    for sched in list(_open):
        sched.abandon("the process is exiting")


class ModelScheduler:
    def __init__(
        self,
        model: LoadedModel,
        *,
        observer: SchedulerObserver | None = None,
        runner: StageRunner | None = None,
        clock: Callable[[], float] = time.monotonic,
        supervisor: Supervisor | None = None,
        outcomes: Recorder | None = None,
        on_done: Callable[[], None] | None = None,
        breaker: Breaker | None = None,
        engine: GenerationEngine | None = None,
    ) -> None:
        """`outcomes`: the Provider's recorder, which this scheduler's own (`self.outcomes`: breaker verdicts,
        `on_done` for keep-alive, a canary's tally) passes every record on to."""
        if runner is None:
            from hf_provider.scheduling.worker import StageRunner

            runner = StageRunner(model)
        b = model.spec.batching
        self.model = model
        self.name = model.name
        self.observer = observer or NullObserver()
        self.runner = runner
        self.clock = clock
        self.supervisor = supervisor or Supervisor()
        self.breaker = breaker  # the model's circuit breaker: the Provider asks it, settlement gives verdicts
        self.engine = engine  # continuous batching (scheduling/continuous.py) replaces the three stages
        self.outcomes = Recorder(self.supervisor, parent=outcomes)
        if breaker is not None:
            self.outcomes.listen("breaker", _breaker_verdict(breaker))
        if on_done is not None:  # keep-alive idles from a request's end
            self.outcomes.listen("settle-hook", lambda _o: on_done())
        self._max_wait_s = None if b.max_wait_ms is None else b.max_wait_ms / 1000.0
        self._cross_task = getattr(b, "cross_task", True)
        # Tasks on one encoder trunk share a batch (scheduling/mixed.py); not in a worker process, which is sent
        # one task's call per batch (isolation/child.py).
        self._trunk = self._cross_task and getattr(model.spec, "isolation", "thread") != "process"
        self.pending = Pending(
            BatchQueue(
                max_batch_size=b.max_batch_size,
                max_batch_tokens=b.max_batch_tokens,
                shares=getattr(model.spec, "task_share", None),
            )
        )
        self.rate = ServiceRate()
        self.admission = Admission(self.name, self.pending, self.rate, max_queue=b.max_queue, clock=clock)
        common = {"observer": self.observer, "supervisor": self.supervisor, "clock": clock}
        self.completion = Completion(self.name, self.pending, self.rate, runner, **common)
        stages: StaticStages | ContinuousLoop
        cpu_threads = getattr(model.spec, "cpu_threads", "auto")
        # "auto" leaves static forward threads as torch starts them (the process count): setting their count
        # explicitly, even to the same number, cost served MiniLM 7-16% (bench/serve_embeddings.py, same run)
        static_threads = cpu_threads if isinstance(cpu_threads, int) else None
        if engine is not None:
            mode = getattr(b, "yield_to_interactive", "auto")
            always = mode == "always" or (mode == "auto" and getattr(model.device, "type", "cpu") != "cuda")
            stages = ContinuousLoop(
                self.name,
                engine,
                self.pending,
                self.completion,
                runner,
                yield_always=always,
                preempt_for_share=bool(getattr(model.spec, "task_share", None)),
                threads=StepThreads(cpu_threads, device=getattr(model.device, "type", "cpu"), name=self.name),
                static_threads=static_threads,
                **common,
            )
        else:
            stages = StaticStages(
                self.name,
                self.pending,
                self.admission,
                self.completion,
                runner,
                max_wait_s=self.max_wait_s,
                follow_bursts=self._max_wait_s is None,
                threads=static_threads,
                **common,
            )
        self._static_threads = static_threads
        self._stages = stages
        self._threads = stages.start()
        _open.add(self)

    # views ------------------------------------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        return len(self.pending)

    @property
    def in_flight(self) -> int:
        return self.pending.in_flight

    @property
    def batches(self) -> int:
        return self.completion.batches

    @property
    def shared_batches(self) -> int:
        return self.completion.shared_batches

    @property
    def last_batch_sizes(self) -> list[int]:
        return self.completion.last_batch_sizes

    @last_batch_sizes.setter
    def last_batch_sizes(self, sizes: list[int]) -> None:  # tests start a measurement from an empty list
        self.completion.last_batch_sizes = sizes

    @property
    def peak_working_bytes(self) -> int | None:
        return self.completion.peak_working_bytes

    def cpu_threads(self) -> dict[str, Any]:
        """The spec's `cpu_threads`, the count static forward passes use, and for continuous decoding the count
        its steps use (None while it measures) and how it was chosen (scheduling/threads.py)."""
        view: dict[str, Any] = {
            "setting": getattr(self.model.spec, "cpu_threads", "auto"),
            "forward": self._static_threads or process_threads(),
        }
        if isinstance(self._stages, ContinuousLoop):
            choice = self._stages.threads.choice
            view["decoding"] = choice.threads
            view["decoding_how"] = choice.how
        return view

    def task_load(self) -> dict[str, dict[str, Any]]:
        """Per task with work: items queued, requests in flight, and its share and default priority (the
        model's `task_share` / `task_priority`); tasks with neither queued nor in-flight work are left out."""
        shares = getattr(self.model.spec, "task_share", None) or {}
        priorities = getattr(self.model.spec, "task_priority", None) or {}
        with self.pending.cv:
            queued = self.pending.queue.task_counts()
            flying = {t: n for t, n in self.pending.in_flight_tasks.items() if n}
        return {
            t: {
                "queued": queued.get(t, 0),
                "in_flight": flying.get(t, 0),
                "share": shares.get(t, 1),
                "priority": priorities.get(t, "interactive"),
            }
            for t in sorted({*queued, *flying})
        }

    def max_wait_s(self, handler: TaskHandler) -> float:
        if self._max_wait_s is not None:
            return self._max_wait_s
        return GENERATION_WAIT_S if handler.generative else 0.0

    def estimated_wait_s(self, priority: int = 0) -> float | None:
        return self.admission.estimated_wait_s(priority)

    def queued_tokens(self) -> int:
        """Token budget (prompt + max_new_tokens) of the generation items waiting in the queue: the work they
        hold, which an item count hides (one may ask for 8 new tokens, the next for 2000)."""
        with self.pending.cv:
            return self.pending.queue.generation_tokens()

    # work -------------------------------------------------------------------------------------------------------
    def cap_batch_tokens(self, tokens: int) -> None:
        """Form no batch of more padded tokens than this (memory/working.py: so one batch fits its budget)."""
        with self.pending.cv:
            q = self.pending.queue
            q.max_batch_tokens = min(q.max_batch_tokens, max(1, tokens))

    def check_admission(self, task: str, priority: int, deadline: float, extra_wait_s: float = 0.0) -> None:
        """Raise Overloaded at once when the estimated queue wait does not fit the deadline (before parsing)."""
        self.admission.check(task, priority, deadline, extra_wait_s)

    def submit(
        self,
        handler: TaskHandler,
        items: list[Item],
        params: dict[str, Any],
        *,
        single: bool,
        priority: int = 0,
        deadline: float = float("inf"),
        sink: DeltaSink | None = None,
        extra_wait_s: float = 0.0,
        ticket: Any = None,
    ) -> Request:
        """Queue one request, or raise Overloaded / ShuttingDown at once (the caller records the refusal).
        `ticket`, the breaker's (resilience/breaker.py), is judged at settlement; a refused request's stays with
        the caller."""
        now = self.clock()
        req = Request(
            handler,
            items,
            params,
            key=trunk_batch_key(handler, params, self._trunk)
            or (batch_group(handler, self._cross_task), handler.batch_key(params)),
            single=single,
            priority=priority,
            submitted=now,
            deadline=deadline,
            sink=sink,
            model=self.name,
            on_settle=self._settle,
        )
        req.ticket = ticket  # before the push: the request may be settled on another thread at once
        with self.pending.cv:
            error = self.admission.refusal_for(req, now, extra_wait_s)
            if error is None:
                self.pending.push(req, now)
        if error is not None:
            raise error
        return req

    def abandon(self, why: str) -> None:
        """Cancel every queued request (nobody will read its answer), then close."""
        now = self.clock()
        with self.pending.cv:
            queued = list(self.pending.queue.requests())
        for req in queued:
            req.cancel(now, why)
        self.close(timeout=10.0)

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting work, finish what is queued, stop the threads."""
        _open.discard(self)
        self.pending.close()
        for t in self._threads:
            t.join(timeout)
        self.supervisor.forget(self.name)
        if (close_runner := getattr(self.runner, "close", None)) is not None:
            close_runner()  # a worker process (isolation/runners.py) ends with its scheduler

    # settlement -------------------------------------------------------------------------------------------------
    def _settle(self, req: Request, was: str, error: BaseException | None) -> None:
        """The one place a settled request is accounted for; runs once per request, on whichever thread won."""
        self.pending.settled(req)
        self.outcomes.record(self.outcome_of(req, was, error))

    def outcome_of(self, req: Request, was: str, error: BaseException | None) -> Outcome:
        m = self.model
        outcome = req.outcome or "error"
        # What only an error report reads (device, shape, the inputs' digest) is gathered for failures alone:
        # this runs for every request on a stage thread.
        failed = error is not None and outcome != "cancelled"
        return Outcome(
            model=self.name,
            task=req.handler.task,
            outcome=outcome,
            latency_s=(req.settled_at or self.clock()) - req.submitted,
            items=len(req.items),
            tokens=req.input_tokens + req.generated,
            revision=m.commit,
            error=error,
            phase="queue" if was == "queued" else "forward",  # unless a stage tagged the error itself
            served_by=None if was == "queued" else self.name,  # it never left the queue: nobody served it
            fallback_reason=req.fallback_reason,
            request_id=req.request_id,
            device=_text(getattr(m, "device", None)) if failed else None,
            dtype=_text(getattr(m, "dtype", None)) if failed else None,
            input_shape=(len(req.items), max((i.n_tokens for i in req.items), default=0)) if failed else None,
            inputs=[i.data for i in req.items] if failed else None,
            request=req,
        )


def batch_group(handler: TaskHandler, cross_task: bool) -> str:
    """What the first part of a batch key is: the task, or the group of tasks that compute the same thing
    (`batch_group` on the handler: the seq2seq tasks decode together) when the model allows cross-task batches."""
    group = getattr(handler, "batch_group", None)
    return group if cross_task and isinstance(group, str) else handler.task


def _breaker_verdict(breaker: Breaker) -> Callable[[Outcome], None]:
    """The breaker's listener: every settled request that holds one of its tickets gives a verdict."""

    def settle(o: Outcome) -> None:
        ticket = None if o.request is None else o.request.ticket
        if ticket is not None:
            breaker.settle(ticket, o.outcome, o.error)

    return settle


def _text(value: Any) -> str | None:
    return None if value is None else str(value).removeprefix("torch.")
