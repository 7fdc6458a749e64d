"""The run of a pipeline's steps (pipelines/run.py) against a scripted stand-in for the Provider's request API, so
interleavings are chosen by the test (events, a hand-stepped clock), never by timing: steps that need nothing of
each other are submitted together; a failed step cancels its running siblings and nothing after it is submitted;
a deadline met before a step's turn never submits it; conditions skip, and skipping spreads; a map step is one
request of all its items; cancelling the run cancels the running step. The same paths on the real Provider and
models are in tests/integration/test_pipelines_http.py and test_pipelines_python.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from hf_provider.errors import DeadlineExceeded, InvalidInput, StepFailed
from hf_provider.pipelines.plan import Plan, compile_plan
from hf_provider.pipelines.run import Execution
from hf_provider.settings.pipelines import PipelineSpec
from hf_provider.spec import ModelSpec

MODELS = {"m": ModelSpec(name="m", source="/nonexistent")}
GUARD_S = 30.0  # a hang guard only: every wait below ends on an event the test sets


class Script:
    """Answers each step's request as the test says: `gates[step]` (an asyncio.Event) holds it, `fail[step]`
    raises, `on[step]` runs at submission; records submissions and cancellations."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, Any, Any]] = []
        self.cancelled: list[str] = []
        self.started: dict[str, asyncio.Event] = {}
        self.gates: dict[str, asyncio.Event] = {}
        self.fail: dict[str, BaseException] = {}
        self.on: dict[str, Callable[[], None]] = {}

    def started_event(self, task: str) -> asyncio.Event:
        return self.started.setdefault(task, asyncio.Event())

    async def arun_usage(self, model: str, task: str, inputs: Any, params: Any, **kw: Any) -> Any:
        # the step's name travels as its task in these plans (tasks are free text to the runner)
        self.submitted.append((task, inputs, dict(params)))
        self.started_event(task).set()
        if task in self.on:
            self.on[task]()
        try:
            if task in self.gates:
                await self.gates[task].wait()
        except asyncio.CancelledError:
            self.cancelled.append(task)
            raise
        if task in self.fail:
            raise self.fail[task]
        out: Any = [{"text": f"{task}({i})"} for i in inputs] if isinstance(inputs, list) else None
        return SimpleNamespace(result=out or {"text": f"{task}({inputs})"}, served_by=model)

    async def open_stream(self, *a: Any, **kw: Any) -> Any:  # pragma: no cover - not streamed here
        raise AssertionError("no stream expected")


def plan(*steps: dict[str, Any], output: Any = None) -> Plan:
    """A checked plan whose steps' tasks are renamed after the steps, so the script can tell them apart."""
    specs = [{"model": "m", "task": "summarization", **s} for s in steps]
    p = compile_plan(PipelineSpec(name="p", steps=specs, output=output), MODELS)
    renamed = tuple(replace(s, task=s.name) for s in p.steps)
    return replace(p, steps=renamed, by_name={s.name: s for s in renamed})


def execution(p: Any, script: Script, inputs: Any = "x", **kw: Any) -> Execution:
    kw.setdefault("deadline", float("inf"))
    return Execution(p, script, inputs, kw.pop("parameters", {}), priority="interactive", **kw)


def go(coro: Any) -> Any:
    async def guarded() -> Any:
        return await asyncio.wait_for(coro, GUARD_S)

    return asyncio.run(guarded())


def test_independent_steps_are_submitted_together_and_a_gatherer_waits_for_both() -> None:
    script = Script()
    p = plan(
        {"name": "a", "input": "{inputs}"},
        {"name": "b", "input": "{inputs}"},
        {"name": "join", "input": "{a.text} + {b.text}"},
    )

    async def main() -> Any:
        script.gates = {"a": asyncio.Event(), "b": asyncio.Event()}
        run = asyncio.ensure_future(execution(p, script).run())
        await script.started_event("a").wait()
        await script.started_event("b").wait()  # both submitted while neither has answered: fan-out
        assert [s[0] for s in script.submitted] == ["a", "b"]
        script.gates["b"].set()
        script.gates["a"].set()
        return await run

    result = go(main())
    assert script.submitted[-1][:2] == ("join", "a(x) + b(x)")
    assert result.output == {"text": "join(a(x) + b(x))"}


def test_two_steps_that_need_nothing_of_each_other_are_submitted_together() -> None:
    script = Script()
    p = plan({"name": "a", "input": "{inputs}"}, {"name": "b", "input": "{inputs}"})
    assert not p.chain

    async def main() -> Any:
        script.gates = {"a": asyncio.Event(), "b": asyncio.Event()}
        run = asyncio.ensure_future(execution(p, script).run())
        await script.started_event("b").wait()  # b is submitted while a has not answered
        assert [s[0] for s in script.submitted] == ["a", "b"]
        script.gates["a"].set()
        script.gates["b"].set()
        return await run

    assert go(main()).output == {"text": "b(x)"}
    assert plan({"name": "one"}, {"name": "two"}).chain  # the default input: the previous step's text


def test_a_failed_step_cancels_its_running_sibling_and_nothing_after_is_submitted() -> None:
    script = Script()
    p = plan(
        {"name": "a", "input": "{inputs}"},
        {"name": "b", "input": "{inputs}"},
        {"name": "after", "input": "{a.text}{b.text}"},
    )
    script.fail["a"] = InvalidInput("bad value", param="x")
    ends: list[tuple[str | None, str]] = []

    async def main() -> None:
        script.gates = {"a": asyncio.Event(), "b": asyncio.Event()}
        run = execution(p, script, on_done=lambda _p, s, o, _t: ends.append((s, o)))
        task = asyncio.ensure_future(run.run())
        await script.started_event("b").wait()
        script.gates["a"].set()
        with pytest.raises(InvalidInput) as e:
            await task
        assert e.value.pipeline_step == {"pipeline": "p", "step": "a", "model": "m", "task": "a"}
        assert e.value.message.startswith("pipeline 'p', step 'a' (model 'm', task 'a'): bad value")

    for _ in range(20):  # the race between a's failure and b's progress, many times
        script.submitted.clear()
        script.cancelled.clear()
        script.started.clear()
        ends.clear()
        go(main())
        assert script.cancelled == ["b"]
        assert "after" not in [s[0] for s in script.submitted]
        assert ("a", "client_error") in ends and ("b", "cancelled") in ends and (None, "client_error") in ends


def test_a_deadline_met_during_step_1_never_submits_step_2() -> None:
    script = Script()
    now = [0.0]
    script.on["one"] = lambda: now.__setitem__(0, 10.0)  # step 1 runs past the deadline (at 5)
    p = plan({"name": "one"}, {"name": "two"})
    run = execution(p, script, deadline=5.0, clock=lambda: now[0])
    with pytest.raises(DeadlineExceeded, match=r"pipeline 'p', step 'two'.*deadline passed before this step"):
        go(run.run())
    assert [s[0] for s in script.submitted] == ["one"] and run.started == ["one"]


def test_cancelling_the_run_cancels_the_running_step_and_nothing_after_runs() -> None:
    script = Script()
    p = plan({"name": "one"}, {"name": "two"})

    async def main() -> None:
        script.gates = {"one": asyncio.Event()}
        task = asyncio.ensure_future(execution(p, script).run())
        await script.started_event("one").wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    go(main())
    assert script.cancelled == ["one"] and [s[0] for s in script.submitted] == ["one"]


def test_conditions_skip_and_skipping_spreads_unless_an_alternative_ran() -> None:
    script = Script()
    p = plan(
        {"name": "cls", "input": "{inputs}"},
        {"name": "yes", "input": "{inputs}", "when": {"value": "{cls.text}", "equals": "cls(go)"}},
        {"name": "no", "input": "{inputs}", "when": {"value": "{cls.text}", "not_equals": "cls(go)"}},
        {"name": "after_no", "input": "{no.text}"},
        {"name": "joined", "input": "{yes.text|no.text}"},
    )
    result = go(execution(p, script, inputs="go").run())
    assert [s[0] for s in script.submitted] == ["cls", "yes", "joined"]
    assert result.steps["no"].skipped and result.steps["after_no"].skipped
    assert result.output == {"text": "joined(yes(go))"}  # the last step that ran


def test_a_map_step_is_one_request_of_all_its_items_and_bad_lists_are_refused() -> None:
    script = Script()
    p = plan(
        {"name": "each", "map": "{inputs.docs}", "input": "doc: {item}"},
        {"name": "all", "input": "{each.text}"},
    )
    result = go(execution(p, script, inputs={"docs": ["a", "b", "c"]}).run())
    assert script.submitted[0][:2] == ("each", ["doc: a", "doc: b", "doc: c"])
    assert script.submitted[1][1] == ["each(doc: a)", "each(doc: b)", "each(doc: c)"]
    assert len(result.output) == 3
    with pytest.raises(InvalidInput, match=r"field 'map': \{inputs.docs\} must be a non-empty list"):
        go(execution(p, Script(), inputs={"docs": []}).run())
    with pytest.raises(InvalidInput, match=r"field 'input': \{inputs.docs\}: inputs has no field 'docs'"):
        go(execution(p, Script(), inputs={"doc": ["a"]}).run())


def test_request_parameters_override_a_steps_own_and_an_internal_error_hides_its_text() -> None:
    script = Script()
    p = plan({"name": "one", "parameters": {"a": 1, "b": 2}})
    go(execution(p, script, parameters={"one": {"b": 3}}).run())
    assert script.submitted[0][2] == {"a": 1, "b": 3}
    script = Script()
    script.fail["one"] = RuntimeError("secret input text")
    with pytest.raises(StepFailed) as e:
        go(execution(p, script).run())
    assert "secret" not in e.value.message and "step 'one'" in e.value.message
    assert isinstance(e.value.__cause__, RuntimeError)


def test_a_hook_that_raises_never_breaks_the_run() -> None:
    def boom(*a: Any) -> None:
        raise RuntimeError("hook")

    result = go(execution(plan({"name": "one"}), Script(), on_done=boom).run())
    assert result.output == {"text": "one(x)"}
