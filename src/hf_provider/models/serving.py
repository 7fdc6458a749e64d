"""What a loaded model serves through: its task handlers on the shared weights and its circuit breaker. Functions
the manager calls at load and at submission, kept apart so each is read (and tested) without the manager."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hf_provider.errors import TaskNotSupported, Unavailable
from hf_provider.resilience.breaker import Breaker
from hf_provider.runtime.foreground import yield_point
from hf_provider.runtime.model import LoadedModel
from hf_provider.runtime.tasks import build_handler, supported_tasks
from hf_provider.spec import ModelSpec
from hf_provider.types import TaskHandler

if TYPE_CHECKING:
    from hf_provider.models.entry import Entry
    from hf_provider.resilience.supervisor import Supervisor

log = logging.getLogger(__name__)


def attach_tasks(model: LoadedModel, tasks: list[str]) -> None:
    """Build handlers on the already-loaded weights; an unservable task raises TaskNotSupported."""
    for task in tasks:
        if task not in model.handlers:
            yield_point()  # a swap's load steps aside for forward passes between handlers (runtime/foreground.py)
            model.handlers[task] = build_handler(task, model, model.spec.defaults.get(task))


def handler(e: Entry, task: str) -> TaskHandler:
    """The handler of `task` on `e`'s loaded model; TaskNotSupported says whether the architecture could."""
    model = e.model
    if model is None:
        raise Unavailable(f"model {e.spec.name!r} is not loaded", model=e.spec.name, retry_after=1.0)
    h = model.handlers.get(task)
    if h is None:
        reason = None
        if task in supported_tasks(model):
            reason = "the task is supported by the architecture but not enabled in this model's 'tasks'"
        raise TaskNotSupported(e.spec.name, task, model.handlers, reason)
    return h


def breaker_for(
    spec: ModelSpec, observer: Any, supervisor: Supervisor, clock: Callable[[], float]
) -> Breaker | None:
    """A fresh breaker per load (a reload may be the fix), its state changes pushed to the observer."""
    b = spec.breaker
    if b is None or b.failures == 0:
        return None
    hook = getattr(observer, "breaker_changed", None)

    def changed(old: str, new: str) -> None:
        if new == "open":
            log.warning("circuit breaker of %s opened (was %s)", spec.name, old)
        else:
            log.info("circuit breaker of %s is %s (was %s)", spec.name, new, old)
        if hook is not None:
            supervisor.call("observer", hook, spec.name, old, new)

    breaker = Breaker(b.failures, b.cooldown, b.probes, clock=clock, on_change=changed)
    if hook is not None:
        supervisor.call("observer", hook, spec.name, None, "closed")
    return breaker
