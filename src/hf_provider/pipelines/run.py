"""One run of a pipeline: its steps as asyncio tasks over the Provider's own submission path.

Every step is one request through `StepRunner` (the Provider's `arun_usage` / `open_stream`), so admission,
fallbacks, breakers, batching, deadlines, cancellation and outcome records apply to it exactly as to a request
a client sends; the pipeline adds no bookkeeping of its own below that. What the pipeline owns:

- one deadline and one priority for the whole run: each step is submitted with the same absolute deadline (what
  is left of it), and a step whose turn comes after the deadline is never submitted;
- order: a step's task waits for the steps it needs, so independent steps run at once (fan-out);
- the end: the first step that fails cancels every other step (a running request is cancelled in its scheduler,
  one not yet submitted never is), and its error is raised naming the pipeline, the step, its model and task;
  a cancelled run (the client went away) cancels them the same way before it returns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Protocol

from hf_provider.context import PIPELINE_STEP, REQUEST_ID, TRACE
from hf_provider.errors import (
    Cancelled,
    DeadlineExceeded,
    InvalidInput,
    ModelNotFound,
    ProviderError,
    StepFailed,
    TaskNotSupported,
    Unavailable,
)
from hf_provider.pipelines.plan import INPUTS, ITEM, Plan, Step
from hf_provider.pipelines.templates import Skipped, render

#: (pipeline, step or None for the whole run, outcome, seconds): the observer's `pipeline_done`
DoneHook = Callable[[str, str | None, str, float], None]
DeltaSink = Callable[[str], None]


class StepRunner(Protocol):
    """What a step needs of the Provider (facade.py): its public request API, nothing below it."""

    async def arun_usage(
        self, model: str, task: str, inputs: Any, params: Any, *, priority: str | None, deadline: float | None
    ) -> Any: ...

    async def open_stream(
        self, model: str, task: str, prompt: str, params: Any, *, priority: str | None, deadline: float | None
    ) -> Any: ...


@dataclass(slots=True)
class StepResult:
    output: Any
    model: str
    task: str
    served_by: str | None
    latency_s: float
    skipped: bool = False

    def view(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "task": self.task,
            "served_by": self.served_by,
            "skipped": self.skipped,
            "latency_ms": round(self.latency_s * 1000, 3),
            "output": self.output,
        }


@dataclass(slots=True)
class Result:
    """A run's answer: the pipeline's output, and every step's result (for `return_steps`)."""

    output: Any
    steps: dict[str, StepResult]

    def body(self, name: str, return_steps: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"pipeline": name, "outputs": self.output}
        if return_steps:
            out["steps"] = {k: v.view() for k, v in self.steps.items()}
        return out


def outcome_of(exc: BaseException) -> str:
    """A failed step's outcome, named as a request's (types.OUTCOMES)."""
    if isinstance(exc, DeadlineExceeded):
        return "timed_out"
    if isinstance(exc, Cancelled | asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, InvalidInput | TaskNotSupported | ModelNotFound):
        return "client_error"
    if isinstance(exc, Unavailable):
        return "rejected"
    return "error"


def name_step(exc: BaseException, pipeline: str, step: Step) -> ProviderError:
    """The error a failed step answers with: its own class (so its HTTP status and a Python caller's `except`
    stay what they were), its message prefixed with the pipeline, step, model and task, and those four in
    `exc.pipeline_step` for the error body. An error that is no ProviderError (a bug, a device error) becomes
    StepFailed, whose message names the step but not the error's text (which may quote inputs)."""
    if not isinstance(exc, ProviderError):
        rid = REQUEST_ID.get()
        err = StepFailed(
            f"failed with an internal error{f' (request id {rid})' if rid else ''}; the server's log has the details",
            model=step.model,
            task=step.task,
        )
        err.__cause__ = exc
        exc = err
    if getattr(exc, "pipeline_step", None) is None:
        where = f"pipeline {pipeline!r}, step {step.name!r} (model {step.model!r}, task {step.task!r})"
        exc.message = f"{where}: {exc.message}"
        exc.args = (exc.message,)
        exc.pipeline_step = {  # type: ignore[attr-defined]
            "pipeline": pipeline,
            "step": step.name,
            "model": step.model,
            "task": step.task,
        }
    return exc


class Execution:
    """One run of `plan` for one request's inputs."""

    def __init__(
        self,
        plan: Plan,
        runner: StepRunner,
        inputs: Any,
        parameters: Mapping[str, Mapping[str, Any]],
        *,
        priority: str | None,
        deadline: float,
        on_done: DoneHook | None = None,
        sink: DeltaSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plan = plan
        self.clock = clock  # the deadline's clock (time.monotonic, as the Provider's); tests step it by hand
        self.runner = runner
        self.parameters = parameters
        self.priority = priority
        self.deadline = deadline
        self.on_done = on_done
        self.sink = sink  # set: the last step streams its deltas here
        self.scope: dict[str, Any] = {INPUTS: inputs}  # a skipped step never enters it
        self.results: dict[str, StepResult] = {}
        self.started: list[str] = []  # steps submitted, in order (tests count what was computed)
        self._done: dict[str, asyncio.Future[None]] = {}

    async def run(self) -> Result:
        begun = self.clock()
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        try:
            if self.plan.chain:
                # Each step needs the one before: run them in this task. A task per step would add event-loop
                # turns between steps, each of which can wait for the GIL a stage thread holds (bench/pipelines.py).
                for s in self.plan.steps:
                    await self._traced(s)
            else:
                self._done = {s.name: loop.create_future() for s in self.plan.steps}
                tasks = [asyncio.ensure_future(self._step(s)) for s in self.plan.steps]
                await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                failed = next((t for t in tasks if t.done() and not t.cancelled() and t.exception()), None)
                if failed is not None:
                    raise failed.exception()  # type: ignore[misc]
            output = self._output()
        except BaseException as exc:
            await _cancel_all(tasks)
            self._record(None, outcome_of(exc), self.clock() - begun)
            raise
        self._record(None, "ok", self.clock() - begun)
        return Result(
            output, {s.name: self.results[s.name] for s in self.plan.steps if s.name in self.results}
        )

    def _output(self) -> Any:
        if self.plan.output is not None:
            try:
                return render(self.plan.output, self.scope)
            except (Skipped, LookupError) as e:
                raise InvalidInput(
                    f"pipeline {self.plan.name!r}, field 'output': {e}", param="output"
                ) from None
        for s in reversed(self.plan.steps):
            if s.name in self.scope:
                return self.scope[s.name]
        return None

    async def _step(self, step: Step) -> None:
        done = self._done[step.name]
        try:
            for need in step.needs:  # a failed need ends the run before this one's turn: it is cancelled
                await self._done[need]
            await self._traced(step)
        except BaseException:
            done.cancel()  # the steps that need this one end without running (the run is failing)
            raise
        done.set_result(None)

    async def _traced(self, step: Step) -> None:
        # Its requests (and their error reports) know the step; reset after, for the next step of a chain.
        token = PIPELINE_STEP.set((self.plan.name, step.name))
        try:
            await self._spanned(step)
        finally:
            PIPELINE_STEP.reset(token)

    async def _spanned(self, step: Step) -> None:
        trace = TRACE.get()
        child = getattr(trace, "child", None)
        if child is None:
            await self._execute(step)
            return
        sub, span = child(
            "hfp.pipeline.step",
            {
                "hfp.pipeline": self.plan.name,
                "hfp.step": step.name,
                "hfp.model": step.model,
                "hfp.task": step.task,
            },
        )
        token = TRACE.set(sub)  # the step's request spans hang under its span
        outcome = "error"
        try:
            await self._execute(step)
            outcome = "skipped" if self.results[step.name].skipped else "ok"
        except BaseException as exc:
            outcome = outcome_of(exc)
            raise
        finally:
            TRACE.reset(token)
            if span is not None:
                span.set_attribute("hfp.outcome", outcome)
                span.end()

    async def _execute(self, step: Step) -> None:
        begun = self.clock()
        try:
            inputs = self._inputs(step)
        except Skipped:
            self.results[step.name] = StepResult(None, step.model, step.task, None, 0.0, skipped=True)
            self._record(step.name, "skipped", 0.0)
            return
        except ProviderError as exc:
            self._record(step.name, "client_error", 0.0)
            raise name_step(exc, self.plan.name, step) from None
        if self.clock() >= self.deadline:  # its turn came too late: never submitted
            exc = DeadlineExceeded(
                "the pipeline's deadline passed before this step could start; nothing more was computed "
                "(a longer X-Request-Timeout, or timeout= in Python, gives the pipeline more time)"
            )
            self._record(step.name, "timed_out", 0.0)
            raise name_step(exc, self.plan.name, step)
        params = {**step.parameters, **self.parameters.get(step.name, {})}
        self.started.append(step.name)
        try:
            if self.sink is not None and step is self.plan.last:
                output, served_by = await self._stream(step, inputs, params)
            else:
                answer = await self.runner.arun_usage(
                    step.model, step.task, inputs, params, priority=self.priority, deadline=self.deadline
                )
                output, served_by = answer.result, answer.served_by
        except BaseException as exc:
            self._record(step.name, outcome_of(exc), self.clock() - begun)
            if isinstance(exc, Exception):
                named = name_step(exc, self.plan.name, step)
                raise named from (exc if named is not exc else None)  # StepFailed keeps the real error
            raise
        latency = self.clock() - begun
        self.scope[step.name] = output
        self.results[step.name] = StepResult(output, step.model, step.task, served_by, latency)
        self._record(step.name, "ok", latency)

    async def _stream(self, step: Step, prompt: Any, params: Mapping[str, Any]) -> tuple[Any, str]:
        stream = await self.runner.open_stream(
            step.model, step.task, prompt, params, priority=self.priority, deadline=self.deadline
        )
        try:
            async for delta in stream:
                self.sink(delta)  # type: ignore[misc]
            return stream.result, stream.request.served_by
        finally:
            stream.close()

    def _inputs(self, step: Step) -> Any:
        """The step's inputs from the request and the steps before it; Skipped when its condition fails or it
        needs a skipped step."""
        where = f"pipeline {self.plan.name!r}, step {step.name!r}"
        try:
            if step.when is not None:
                template, cond = step.when
                if not cond.holds(render(template, self.scope)):
                    raise Skipped(step.name)
            if step.map is None:
                return render(step.input, self.scope)
            items = render(step.map, self.scope)
            if not isinstance(items, list) or not items:
                raise InvalidInput(
                    f"{where}, field 'map': {step.map.parts[0].text} must be a non-empty list, got "  # type: ignore[union-attr]
                    f"{type(items).__name__}",
                    param="map",
                )
            return [render(step.input, {**self.scope, ITEM: item}) for item in items]
        except LookupError as e:
            raise InvalidInput(f"{where}, field 'input': {e}", param="inputs") from None

    def _record(self, step: str | None, outcome: str, seconds: float) -> None:
        if self.on_done is not None:
            with suppress(Exception):  # a hook never breaks the request (the observer's hooks never raise)
                self.on_done(self.plan.name, step, outcome, seconds)


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel every step still running and wait until each has cancelled its request: nothing is computed for
    the run after this returns."""
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
