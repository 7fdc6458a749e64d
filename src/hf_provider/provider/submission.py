"""`Submitter`: how a request reaches a scheduler (a model's fallback chain, its lease, canary routing, breaker and
admission, then parsed and queued), and the recording of every request that ends before it reaches one.

A collaborator of the Provider (facade.py), built from what it needs: the model manager, the Provider's outcome
recorder, the fallback chains and the fault injector. Whatever leaves `submit` is recorded exactly once: a queued
request by its scheduler when it settles, a refusal here (`refuse`), each model of a fallback chain that refused
it included.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hf_provider.context import CLIENT_NAMES, REQUEST_ID, TRACE, mark_recorded
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
from hf_provider.observability.outcomes import Recorder
from hf_provider.reporting.reports import tag
from hf_provider.resilience import fallback
from hf_provider.resilience.breaker import OPEN, Ticket
from hf_provider.scheduling.request import Request
from hf_provider.types import PRIORITIES, TASKS, DeltaSink, Outcome, TaskHandler

if TYPE_CHECKING:
    from hf_provider.models.manager import ModelManager
    from hf_provider.resilience.faults import FaultInjector
    from hf_provider.scheduling.batcher import ModelScheduler

_Args = tuple[str, str, Any, Mapping[str, Any], str, float, DeltaSink | None]  # priority resolved


def refusal_kind(exc: BaseException) -> tuple[str, str]:
    """(outcome, phase) of a request refused before it was queued."""
    if isinstance(exc, InvalidInput | TaskNotSupported | ModelNotFound):
        return "client_error", "parse"
    if isinstance(exc, ModelLoadError | MemoryBudgetExceeded):
        return "error", "load"
    if isinstance(exc, Unavailable):
        return "rejected", "queue"
    return "error", "parse"


class Submitter:
    def __init__(
        self,
        manager: ModelManager,
        outcomes: Recorder,
        *,
        fallbacks: Mapping[str, list[str]],
        faults: FaultInjector | None = None,
        observer: Any = None,
    ) -> None:
        self.manager = manager
        self.outcomes = outcomes
        self.fallbacks = dict(fallbacks)  # model -> its fallbacks, tried in order when it refuses a request
        self.faults = faults
        self.observer = observer
        # Event-loop lag measured by the server (server/loadshed.py): added to every estimated queue wait, since
        # a request's answer waits for the loop as well as for the model.
        self.loop_lag_s = 0.0

    def submit(
        self,
        model: str,
        task: str,
        inputs: Any,
        params: Mapping[str, Any],
        priority: str | None,
        deadline: float,
        sink: DeltaSink | None,
    ) -> Request:
        """Queue the request on `model` or the first of its fallbacks that takes it; a refusal is recorded here
        (for the model that refused) and raised."""
        chain = self.fallbacks.get(model)
        try:
            if not chain:
                req = self._submit(model, task, inputs, params, priority, deadline, sink)
            else:
                req = self._submit_chain(model, chain, task, inputs, params, priority, deadline, sink)
        except BaseException as exc:
            # The error raised after a walk of the chain is the last fallback's: recorded for that model.
            who = exc.model if chain and isinstance(exc, ProviderError) and exc.model in chain else model
            if isinstance(exc, Exception):
                self.refuse(who, task, exc, inputs)
            raise
        mark_recorded()  # its scheduler records it when it settles
        return req

    def refuse(self, model: str, task: str, exc: BaseException, inputs: Any = None) -> None:
        """Record a request that ended before it reached a scheduler (refused, or failed by a bug before the
        queue), under the model it named (unknown names collapse to "-")."""
        outcome, phase = refusal_kind(exc)
        self.outcomes.record(
            Outcome(
                model=model if model in self.manager.names() else "-",
                task=task if task in TASKS else "-",
                outcome=outcome,
                error=exc,
                phase=phase,
                request_id=REQUEST_ID.get(),
                inputs=inputs,
            )
        )
        mark_recorded()

    # the path to a queue ----------------------------------------------------------------------------------------
    def _submit_chain(self, model: str, chain: list[str], task: str, *args: Any) -> Request:
        # Every refusal that switches happens before the request is queued (breaker, admission, load): the
        # request is computed once, by whichever model took it.
        inputs = args[0]
        served = fallback.serve(
            model,
            chain,
            lambda name: self._submit(name, task, *args),
            serves=lambda name: self._serves(name, task),
            is_open=self._is_open,
            on_refused=lambda name, exc: self.refuse(name, task, exc, inputs),
        )
        req: Request = served.value
        if served.reason is not None:
            # Set before the caller sees the request; it is read only once the request is settled.
            req.fallback_reason = served.reason
            if self.observer is not None and hasattr(self.observer, "fallback_used"):
                self.manager.supervisor.call(
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
        priority: str | None,
        deadline: float,
        sink: DeltaSink | None,
    ) -> Request:
        # The one place priorities are validated (HTTP passes X-Priority here). None: the model's default for
        # the task (`task_priority` in its spec), else interactive.
        if priority is None:
            priority = self.manager.entry(model).spec.task_priority.get(task, "interactive")
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
        self, sched: ModelScheduler, handler: TaskHandler, ticket: Ticket | None, args: _Args
    ) -> Request:
        """Parse and queue under the lease (the breaker admitted the request)."""
        model, task, inputs, params, priority, deadline, sink = args
        sched.check_admission(task, PRIORITIES[priority], deadline, self.loop_lag_s)
        if sink is not None and not handler.streaming:
            raise InvalidInput(
                f"task {task!r} does not stream: only text-generation on a decoder-only model (such as gpt2) "
                "streams; ask for the whole answer instead (stream: false over HTTP, provider.run in Python)",
                param="stream",
            )
        trace = TRACE.get()
        started = time.perf_counter() if trace is not None else 0.0
        try:
            if self.faults is not None:
                self.faults.check(model, "parse")
            items, resolved, single = handler.parse(inputs, params)
        except InvalidInput as exc:
            # Named as the client named it (context.CLIENT_NAMES): what is recorded is what the client reads.
            named = exc.renamed(CLIENT_NAMES.get())
            tag(named, "parse")
            raise named from None
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
