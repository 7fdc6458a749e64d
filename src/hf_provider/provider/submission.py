"""How a request reaches a scheduler: through a model's fallback chain, its lease, canary routing, breaker and
admission, then parsed and queued; and the count of requests that end before they reach one.

A mixin of `Provider` (provider.py), which owns the manager, observer and settings: the facade keeps the public
calls, this module the path each of them takes to a queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hf_provider.context import TRACE
from hf_provider.errors import (
    CircuitOpen,
    InvalidInput,
    MemoryBudgetExceeded,
    ModelLoadError,
    ModelNotFound,
    ProviderError,
    TaskNotSupported,
    Unavailable,
)
from hf_provider.isolation.runners import check_serving
from hf_provider.reporting.reports import tag
from hf_provider.resilience import fallback
from hf_provider.resilience.breaker import OPEN, Ticket
from hf_provider.scheduling.request import Request
from hf_provider.types import PRIORITIES, TASKS, DeltaSink, TaskHandler

if TYPE_CHECKING:
    from hf_provider.models.manager import ModelManager
    from hf_provider.resilience.faults import FaultInjector
    from hf_provider.resilience.supervisor import Supervisor
    from hf_provider.scheduling.batcher import ModelScheduler


class Submission:
    # Set by Provider.__init__.
    manager: ModelManager
    observer: Any
    supervisor: Supervisor
    faults: FaultInjector | None
    loop_lag_s: float
    report: Callable[..., Any]

    def _submit_chain(
        self,
        model: str,
        fallbacks: list[str],
        task: str,
        inputs: Any,
        params: Mapping[str, Any],
        priority: str,
        deadline: float,
        sink: DeltaSink | None,
    ) -> Request:
        # Every refusal that switches happens before the request is queued (breaker, admission, load): the
        # request is computed once, by whichever model took it.
        served = fallback.serve(
            model,
            fallbacks,
            lambda name: self._submit(name, task, inputs, params, priority, deadline, sink),
            serves=lambda name: self._serves(name, task),
            is_open=self._is_open,
            on_refused=lambda name, exc: self.record_refusal(name, task, exc, inputs),
        )
        req: Request = served.value
        if served.reason is not None:
            # Set before the caller sees the request; it is read only once the request is settled.
            req.fallback_reason = served.reason
            if self.observer is not None and hasattr(self.observer, "fallback_used"):
                self.supervisor.call(
                    "observer", self.observer.fallback_used, model, served.model, served.reason
                )
        return req

    def _serves(self, name: str, task: str) -> bool:
        """Whether a fallback serves `task`, without loading it: a loaded model by its handlers, another by its
        configured tasks (none configured: maybe; the attempt's TaskNotSupported then skips it)."""
        e = self.manager.entry(name)
        loaded = e.model
        if loaded is not None:
            return task in loaded.handlers
        return not e.spec.tasks or task in e.spec.tasks

    def _is_open(self, name: str) -> bool:
        """A fallback whose breaker is open would refuse at once: skipped (no probe ticket is taken)."""
        sched = self.manager.entry(name).scheduler
        return sched is not None and sched.breaker is not None and sched.breaker.state == OPEN

    def _submit(
        self,
        model: str,
        task: str,
        inputs: Any,
        params: Mapping[str, Any],
        priority: str,
        deadline: float,
        sink: DeltaSink | None,
    ) -> Request:
        # The one place priorities are validated (HTTP passes X-Priority here).
        if not isinstance(priority, str) or priority not in PRIORITIES:
            raise InvalidInput(
                f"priority must be one of {', '.join(PRIORITIES)} (header X-Priority, or priority= in Python), "
                f"got {priority!r}",
                param="priority",
            )
        # The lease keeps the model from eviction and keep-alive unloading until the request is queued.
        with self.manager.acquire(model) as e:
            # During a canary (lifecycle/canary.py) its share of requests goes to the candidate's scheduler.
            sched = e.scheduler if e.canary is None else e.canary.route(e.scheduler, task)
            handler = self.manager.handler(e, task) if sched is e.scheduler else sched.model.handlers[task]
            assert sched is not None
            # A crashed worker or a failed device refuses at once (isolation/runners.py; fallbacks may serve).
            check_serving(sched)
            breaker = sched.breaker
            ticket = None if breaker is None else breaker.allow()
            if isinstance(ticket, float):  # open: refused before any parse or forward pass
                raise CircuitOpen(
                    f"model {model!r} is failing: its circuit breaker is open after {breaker.threshold} "
                    f"consecutive failures; retry in {ticket:.1f}s",
                    model=model,
                    task=task,
                    retry_after=ticket,
                )
            try:
                return self._queue(
                    sched, handler, ticket, (model, task, inputs, params, priority, deadline, sink)
                )
            except BaseException:
                if ticket is not None:
                    breaker.release(ticket)  # never queued: no verdict (a probe's ticket goes back)
                raise

    def _queue(
        self,
        sched: ModelScheduler,
        handler: TaskHandler,
        ticket: Ticket | None,
        args: tuple[str, str, Any, Mapping[str, Any], str, float, DeltaSink | None],
    ) -> Request:
        """Parse and queue under the lease (the breaker admitted the request)."""
        model, task, inputs, params, priority, deadline, sink = args
        sched.check_admission(task, PRIORITIES[priority], deadline, self.loop_lag_s)
        if sink is not None and not handler.streaming:
            raise InvalidInput(
                f"task {task!r} does not stream; streaming is available for text-generation",
                param="stream",
            )
        trace = TRACE.get()
        started = time.perf_counter() if trace is not None else 0.0
        try:
            if self.faults is not None:
                self.faults.check(model, "parse")
            items, resolved, single = handler.parse(inputs, params)
        except BaseException as exc:
            tag(exc, "parse")
            raise
        if trace is not None:
            trace.parsed(started)
        if sink is not None and not single:
            raise InvalidInput("streaming takes a single prompt", param="inputs")
        req = sched.submit(
            handler,
            items,
            resolved,
            single=single,
            priority=PRIORITIES[priority],
            deadline=deadline,
            sink=sink,
            extra_wait_s=self.loop_lag_s,
            ticket=ticket,
        )
        req.revision = sched.model.commit or sched.model.spec.revision  # read once the request is settled
        return req

    def record_refusal(self, model: str, task: str, exc: ProviderError, inputs: Any = None) -> None:
        """Count and report a request refused before it reached a scheduler (which counts its own refusals)."""
        if isinstance(exc, ModelLoadError | MemoryBudgetExceeded):
            phase = "load"
        elif isinstance(exc, Unavailable):
            phase = "queue"
        else:
            phase = "parse"
        self.report(exc, model=model, phase=phase, **({} if inputs is None else {"inputs": inputs}))
        if exc.recorded:
            return
        exc.recorded = True
        if isinstance(exc, InvalidInput | TaskNotSupported | ModelNotFound):
            outcome = "client_error"
        elif isinstance(exc, Unavailable):
            outcome = "rejected"
        else:
            outcome = "error"
        self.record_outcome(model, task, outcome, type(exc).__name__)

    def record_outcome(self, model: str, task: str, outcome: str, error_type: str | None = None) -> None:
        """Count a request that ended without reaching a scheduler (answered at once)."""
        if self.observer is None:
            return
        # Only configured names and tasks become label values: clients cannot grow the metrics with made-up ones.
        label = model if model in self.manager.names() else "-"
        task = task if task in TASKS else "-"
        self.supervisor.call(
            "observer", self.observer.request_done, label, task, None, outcome, 0.0, 0, 0, error_type
        )
