"""The Provider's `admin`: what entry points (HTTP routes, the CLI, Ray replicas) read and change about the models,
as plain data. They never reach the ModelManager: its entries, locks and schedulers stay below the Provider.

Views are rendered from one snapshot of the manager's entries (models/views.py); operations name a model and
return its view after the change; `generation` is the task and chat prompt of the model that will serve a
completion, following the model's fallbacks as a request does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from hf_provider.errors import InvalidInput, ModelNotFound, TaskNotSupported
from hf_provider.models import views
from hf_provider.models.entry import Entry
from hf_provider.models.manager import ModelManager
from hf_provider.resilience import fallback
from hf_provider.resilience.breaker import OPEN
from hf_provider.resilience.supervisor import Supervisor
from hf_provider.spec import ModelSpec

GENERATION_TASKS = ("text-generation", "text2text-generation")  # what /v1/completions can run, in preference


class Generation(NamedTuple):
    """What a completion runs: on `model` (the one asked for, or the fallback whose task and template these are),
    `task`, and for a chat its `prompt` rendered by that model's chat template."""

    model: str
    task: str
    prompt: str | None
    template: str | None = None  # the chat template's text (which tool-call format it speaks)


class QueueLoad(NamedTuple):
    wait_s: float  # estimated wait of a new item (every queued item ahead, bulk included)
    tokens: int  # generation tokens queued (prompt + max_new_tokens of each queued item)


class Admin:
    def __init__(
        self, manager: ModelManager, fallbacks: Mapping[str, Sequence[str]], supervisor: Supervisor
    ) -> None:
        self._manager = manager
        self._fallbacks = fallbacks
        self._supervisor = supervisor

    # views ------------------------------------------------------------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        """Every model's view (state, bytes, queue, breaker, worker), in configuration order."""
        return views.describe(self._manager.snapshot())

    def memory(self) -> dict[str, Any]:
        """The budgets of the host and each GPU against their use, and every pool's ledger."""
        return views.memory_view(self._manager.snapshot())

    def models(self) -> dict[str, Any]:
        """The body of GET /v1/admin/models: every model and the memory, from one snapshot."""
        snap = self._manager.snapshot()
        return {"models": views.describe(snap), "memory": views.memory_view(snap)}

    def model(self, name: str) -> dict[str, Any]:
        """One model's view; ModelNotFound for a name that is neither configured nor (ad hoc) a folder or Hub id."""
        self._manager.entry(name)
        view = next((d for d in self.describe() if d["name"] == name), None)
        if view is None:  # an ad-hoc name whose load found nothing is dropped again
            raise ModelNotFound(name, self._manager.names())
        return view

    def names(self) -> list[str]:
        return self._manager.names()

    def specs(self) -> dict[str, ModelSpec]:
        """Each model's spec as it is now (a swap changes its revision, a pin its `pinned`)."""
        return {m.name: m.spec for m in self._manager.snapshot().models}

    def is_ready(self, name: str) -> bool:
        """Whether `name` is configured and loaded (never loads nor registers anything)."""
        return self._manager.is_ready(name)

    def readiness(self, *, started: bool, load_on_start: bool) -> dict[str, Any]:
        """`status` loading (naming the models a start-up load still waits for), degraded (naming the supervised
        components that are down) or ready. A model whose start-up load failed is not waited for: it is down."""
        models = self.describe()
        waiting = [
            m["name"]
            for m in models
            if load_on_start and m["loads"] == 0 and m["keep_alive"] != 0 and not m["error"]
        ]
        if waiting or not started:
            return {"status": "loading", "waiting_for": waiting}
        down = self._supervisor.down()
        if down:  # a dead or failing worker must never leave readiness green
            return {"status": "degraded", "down": down}
        return {"status": "ready", "models": [m["name"] for m in models]}

    # figures read at scrape time, for load shedding and autoscaling -----------------------------------------------
    def queued_items(self) -> int:
        """Items waiting in every loaded model's queue."""
        return views.queued_items(self._manager.snapshot())

    def in_flight_by_model(self) -> dict[str, int]:
        return views.in_flight_by_model(self._manager.snapshot())

    def model_bytes(self) -> dict[str, dict[str, int | None]]:
        """Per loaded model: its weight bytes and the bytes accounted against the budget."""
        return views.model_bytes(self._manager.snapshot())

    def queue_loads(self) -> dict[str, QueueLoad]:
        """Per model with items queued: the estimated wait of a new interactive item and the tokens queued."""
        out = {}
        for name in self._manager.names():
            sched = self._manager.entry(name).scheduler
            if sched is None or sched.queue_depth == 0:
                continue
            out[name] = QueueLoad(float(sched.estimated_wait_s(priority=1) or 0.0), sched.queued_tokens())
        return out

    # operations (blocking: an async caller runs them on a thread) ------------------------------------------------
    def load(self, name: str, *, force: bool = True) -> dict[str, Any]:
        """Load `name` (no-op when loaded) and return its view. An operator's load (`force`) does not wait out the
        pause after a failed load; a start-up load passes force=False."""
        self._manager.get(name, force=force)
        return self.model(name)

    def unload(self, name: str) -> dict[str, Any]:
        self._manager.entry(name)  # ModelNotFound for an unknown name, before anything changes
        self._manager.unload(name)
        return self.model(name)

    def pin(self, name: str, pinned: bool = True) -> dict[str, Any]:
        """Keep `name` from eviction and keep-alive unloading (or stop keeping it)."""
        self._manager.set_pinned(name, pinned)
        return self.model(name)

    def freeze_heap(self, on: bool) -> None:
        """Whether each load ends with gc.freeze (memory/heap.py): process-wide state, so the server's entry point
        turns it on (server/app.py claim_process) and a library Provider leaves it off unless asked."""
        self._manager.freeze_heap = on

    def add_task(self, name: str, task: str) -> None:
        """Serve one more task from a model's weights (loaded if needed; no reload)."""
        from hf_provider.models.serving import attach_tasks

        model = self._manager.get(name).model
        assert model is not None
        attach_tasks(model, [task])

    # completions ------------------------------------------------------------------------------------------------
    def generation(
        self,
        model: str,
        messages: list[dict[str, Any]] | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Generation:
        """The generation task of `model` (and with `messages`, the chat prompt its template renders), loading it
        if needed. When `model` cannot be had for a reason of its own health (its load failed, it does not fit),
        the first of its fallbacks that serves generation answers instead, as a request's walk goes
        (resilience/fallback.py), so the prompt is the serving model's. Blocking."""
        served = fallback.serve(
            model,
            self._fallbacks.get(model, ()),
            lambda name: _generation(name, self._manager.get(name), messages, tools),
            serves=self._serves_generation,
            is_open=self._is_open,
        )
        result: Generation = served.value
        return result

    def _serves_generation(self, name: str) -> bool:
        """Whether a fallback may serve a completion, without loading it (as submission decides for a task)."""
        e = self._manager.entry(name)
        tasks = e.model.handlers if e.model is not None else (e.spec.tasks or GENERATION_TASKS)
        return any(t in tasks for t in GENERATION_TASKS)

    def _is_open(self, name: str) -> bool:
        sched = self._manager.entry(name).scheduler
        return sched is not None and sched.breaker is not None and sched.breaker.state == OPEN


def _generation(
    name: str, e: Entry, messages: list[dict[str, Any]] | None, tools: list[dict[str, Any]] | None = None
) -> Generation:
    handlers = e.model.handlers if e.model is not None else {}
    task = next((t for t in GENERATION_TASKS if t in handlers), None)
    if task is None:
        raise TaskNotSupported(name, "text-generation", handlers, "completions need a text-generation model")
    if messages is None:
        return Generation(name, task, None)
    tok = e.model.tokenizer if e.model is not None else None
    if tok is None or not getattr(tok, "chat_template", None):
        raise InvalidInput(
            f"model {name!r} has no chat template; use /v1/completions with a plain prompt", param="messages"
        )
    try:
        kw = {"tools": tools} if tools else {}
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kw)
    except Exception as exc:  # template errors (e.g. roles out of order) are the caller's to fix
        raise InvalidInput(
            f"the model's chat template rejected the messages: {exc}", param="messages"
        ) from exc
    return Generation(name, task, prompt, str(tok.chat_template))


__all__ = ["GENERATION_TASKS", "Admin", "Generation", "QueueLoad"]
