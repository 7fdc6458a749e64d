"""Pipelines: steps over the configured models and tasks, declared in hfp.toml, served as one request.

The package sits just under the Provider in the layers: the Provider builds `Pipelines` and hands it itself as
the `StepRunner` (its public request API), so a step is submitted exactly as a client's request is, and this
package never imports the Provider. plan.py checks and compiles declarations at start, templates.py renders a
step's inputs, run.py runs one request's steps, stream.py streams its last step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from contextlib import nullcontext
from typing import Any

from hf_provider.context import TRACE
from hf_provider.errors import InvalidInput, PipelineNotFound
from hf_provider.pipelines.plan import Plan, compile_all
from hf_provider.pipelines.run import DoneHook, Execution, Result, StepRunner
from hf_provider.pipelines.stream import PipelineStream
from hf_provider.settings.pipelines import PipelineSpec
from hf_provider.spec import ModelSpec

__all__ = ["PipelineStream", "Pipelines", "Plan", "Result"]


class Pipelines:
    """The configured pipelines of one Provider, and how a request runs one."""

    def __init__(
        self,
        specs: list[PipelineSpec],
        models: Mapping[str, ModelSpec],
        runner: StepRunner,
        *,
        deadline: Callable[[float | None], float],
        on_done: DoneHook | None = None,
        tracing: Callable[[], Any] | None = None,
    ) -> None:
        self.plans: dict[str, Plan] = compile_all(specs, models)  # ConfigError naming pipeline, step, field
        self.runner = runner
        self._deadline = deadline  # the Provider's: request_timeout_s, shortened by a caller's timeout
        self.on_done = on_done
        self.tracing = tracing  # the Provider's Tracing, read at each call (a server may set it after start)
        self.last: Execution | None = None  # the latest run (tests count the steps it submitted)

    def describe(self) -> list[dict[str, Any]]:
        return [p.describe() for p in self.plans.values()]

    def plan(self, name: str) -> Plan:
        plan = self.plans.get(name)
        if plan is None:
            raise PipelineNotFound(name, self.plans)
        return plan

    def check_served(self, tasks_of: Callable[[str], Collection[str] | None]) -> list[tuple[str, str]]:
        """Steps whose model, now loaded, does not serve their task (`tasks_of`: a loaded model's tasks, None
        when it is not loaded): (pipeline, message) each, naming pipeline, step and field. Models that declare
        their tasks were checked at start; the others only once their architecture is known."""
        problems = []
        for plan in self.plans.values():
            for s in plan.steps:
                tasks = tasks_of(s.model)
                if tasks is not None and s.task not in tasks:
                    problems.append(
                        (
                            plan.name,
                            f"pipeline {plan.name!r}, step {s.name!r}, field 'task': model {s.model!r} does not "
                            f"serve task {s.task!r}; it serves {', '.join(tasks) or 'none'}",
                        )
                    )
        return problems

    def execution(
        self,
        name: str,
        inputs: Any,
        parameters: Mapping[str, Any] | None,
        *,
        priority: str | None,
        timeout: float | None,
        deadline: float | None,
        sink: Callable[[str], None] | None = None,
    ) -> Execution:
        plan = self.plan(name)
        when = self._deadline(timeout) if deadline is None else deadline
        run = Execution(
            plan,
            self.runner,
            inputs,
            _step_parameters(plan, parameters),
            priority=priority,
            deadline=when,
            on_done=self.on_done,
            sink=sink,
        )
        self.last = run
        return run

    async def arun(
        self,
        name: str,
        inputs: Any,
        parameters: Mapping[str, Any] | None = None,
        *,
        return_steps: bool = False,
        priority: str | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> Any:
        """The pipeline's output; with `return_steps`, {"pipeline", "outputs", "steps"} (every step's output,
        model, task, latency). Cancelling the awaiting task cancels the running step; nothing after it runs."""
        run = self.execution(name, inputs, parameters, priority=priority, timeout=timeout, deadline=deadline)
        with self._traced():
            result = await run.run()
        return result.body(name, True) if return_steps else result.output

    def run(self, name: str, inputs: Any, parameters: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        """`arun` from synchronous code (not from inside a running event loop: await `arun` there)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.arun(name, inputs, parameters, **kw))
        raise RuntimeError(
            "Provider.pipeline() was called inside a running event loop; await apipeline() there"
        )

    async def open_stream(
        self,
        name: str,
        inputs: Any,
        parameters: Mapping[str, Any] | None = None,
        *,
        priority: str | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> PipelineStream:
        """Start a run whose last step streams its text (a decoder's text-generation); InvalidInput when the
        pipeline's last step does not generate text token by token."""
        plan = self.plan(name)
        if not plan.streams:
            raise InvalidInput(
                f"pipeline {name!r} does not stream: its last step {plan.last.name!r} is task {plan.last.task!r}"
                f"{' over a map' if plan.last.map is not None else ''}; only a last step of text-generation "
                "(with no `output` template) streams. Ask for the whole answer instead (stream: false)",
                param="stream",
            )
        deltas: asyncio.Queue[str | None] = asyncio.Queue()
        run = self.execution(
            name,
            inputs,
            parameters,
            priority=priority,
            timeout=timeout,
            deadline=deadline,
            sink=deltas.put_nowait,
        )
        with self._traced():
            task = asyncio.ensure_future(run.run())  # the task copies the context: request id, trace, call
        return PipelineStream(task, deltas)

    def _traced(self) -> Any:
        """A Python call's steps share one trace (the server's requests have theirs already)."""
        tracing = None if self.tracing is None else self.tracing()
        if tracing is None or TRACE.get() is not None:
            return nullcontext()
        return tracing.python_call()


def _step_parameters(plan: Plan, parameters: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """A request's `parameters`: {step: {name: value}} over the steps' configured ones; a step name that does not
    exist is refused, naming it as the client sent it."""
    if parameters is None:
        return {}
    if not isinstance(parameters, Mapping):
        raise InvalidInput(
            "parameters must be an object of step names to parameter objects, such as "
            f'{{"{plan.last.name}": {{"max_new_tokens": 32}}}}',
            param="parameters",
        )
    out = {}
    for step, params in parameters.items():
        if step not in plan.by_name:
            raise InvalidInput(
                f"parameters.{step}: pipeline {plan.name!r} has no step {step!r}; its steps: "
                f"{', '.join(plan.by_name)}",
                param=f"parameters.{step}",
            )
        if not isinstance(params, Mapping):
            raise InvalidInput(
                f"parameters.{step} must be an object of parameter names to values",
                param=f"parameters.{step}",
            )
        out[step] = params
    return out
