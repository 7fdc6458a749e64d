"""A pipeline's declaration checked and compiled at start: every mistake is a ConfigError naming the pipeline,
the step and the field (unknown model, a task the model does not serve, a reference to a step that does not
exist, a cycle), so `hfp serve` stops with one line instead of failing a request later.

What a step waits for is what its templates name (`input`, `map`, `when`) plus `after`; steps that wait for
nothing of each other run at the same time (fan-out), a step naming several steps gathers them (fan-in).
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hf_provider.errors import ConfigError
from hf_provider.pipelines.templates import Ref, Template, compile_value, refs
from hf_provider.settings.pipelines import ConditionSpec, PipelineSpec, StepSpec
from hf_provider.spec import ModelSpec
from hf_provider.types import TASKS

INPUTS, ITEM = "inputs", "item"
#: The task whose last step streams its tokens (a decoder's text-generation).
STREAMING_TASKS = frozenset({"text-generation"})


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    model: str
    task: str
    input: Any  # compiled (templates.compile_value)
    parameters: Mapping[str, Any]
    map: Template | None
    when: tuple[Template, ConditionSpec] | None
    needs: frozenset[str]  # the steps it waits for


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    steps: tuple[Step, ...]  # as declared
    output: Any  # compiled, or None: the last step that ran
    description: str | None = None
    by_name: Mapping[str, Step] = field(default_factory=dict)

    @property
    def last(self) -> Step:
        return self.steps[-1]

    @property
    def chain(self) -> bool:
        """Every step needs exactly the one before it: nothing can run at the same time as anything else."""
        return all(s.needs == {p.name for p in self.steps[i - 1 : i]} for i, s in enumerate(self.steps))

    @property
    def streams(self) -> bool:
        """Whether the last step generates text token by token (a stream of the pipeline is its stream)."""
        return self.last.task in STREAMING_TASKS and self.last.map is None and self.output is None

    def describe(self) -> dict[str, Any]:
        """GET /v1/pipelines: names, models, tasks and what waits for what; never parameters' values."""
        return {
            "name": self.name,
            "description": self.description,
            "streams": self.streams,
            "steps": [
                {
                    "name": s.name,
                    "model": s.model,
                    "task": s.task,
                    "needs": sorted(s.needs),
                    "map": s.map is not None,
                    "conditional": s.when is not None,
                }
                for s in self.steps
            ],
        }


def compile_all(pipelines: Iterable[PipelineSpec], models: Mapping[str, ModelSpec]) -> dict[str, Plan]:
    plans: dict[str, Plan] = {}
    for spec in pipelines:
        if spec.name in plans:
            raise ConfigError(f"pipeline {spec.name!r} is declared twice; pipeline names must be unique")
        plans[spec.name] = compile_plan(spec, models)
    return plans


def compile_plan(spec: PipelineSpec, models: Mapping[str, ModelSpec]) -> Plan:
    names = [s.name for s in spec.steps]
    steps: list[Step] = []
    for i, s in enumerate(spec.steps):
        where = f"pipeline {spec.name!r}, step {s.name!r}"
        if s.name in (INPUTS, ITEM):
            raise ConfigError(f"{where}, field 'name': {s.name!r} is reserved for templates; rename the step")
        if s.name in names[:i]:
            raise ConfigError(f"{where}, field 'name': another step has this name; step names must be unique")
        _check_model(where, s, models)
        steps.append(_compile_step(where, s, names, None if i == 0 else spec.steps[i - 1].name))
    output = None
    if spec.output is not None:
        output = _compiled(f"pipeline {spec.name!r}, field 'output'", spec.output)
        for ref in refs(output):
            _check_roots(f"pipeline {spec.name!r}, field 'output'", ref, names, None, mapped=False)
    _check_cycles(spec.name, steps)
    return Plan(spec.name, tuple(steps), output, spec.description, {s.name: s for s in steps})


def _check_model(where: str, s: StepSpec, models: Mapping[str, ModelSpec]) -> None:
    m = models.get(s.model)
    if m is None:
        raise ConfigError(
            f"{where}, field 'model': unknown model {s.model!r}; configured models: "
            f"{', '.join(sorted(models)) or 'none'}"
        )
    if s.task not in TASKS:
        raise ConfigError(f"{where}, field 'task': unknown task {s.task!r}; tasks: {', '.join(TASKS)}")
    # A model that declares its tasks is checked here; one that serves "every task its architecture serves" is
    # checked as it loads (Pipelines.check_served), since its architecture is known only then.
    if m.tasks and s.task not in m.tasks:
        raise ConfigError(
            f"{where}, field 'task': model {s.model!r} does not serve task {s.task!r}; it serves "
            f"{', '.join(m.tasks)} (add the task to the model's `tasks`, or use another model)"
        )


def _compile_step(where: str, s: StepSpec, names: list[str], previous: str | None) -> Step:
    mapped = s.map is not None
    if s.input is not None:
        source = s.input
    elif mapped:
        source = "{item}"
    else:
        source = "{inputs}" if previous is None else "{" + previous + ".text}"
    compiled = _compiled(f"{where}, field 'input'", source)
    needs: set[str] = set()
    for ref in refs(compiled):
        needs |= _check_roots(f"{where}, field 'input'", ref, names, s.name, mapped=mapped)
    map_t = None
    if s.map is not None:
        map_t = _compiled(f"{where}, field 'map'", s.map)
        if not (isinstance(map_t, Template) and map_t.whole):
            raise ConfigError(f"{where}, field 'map': must be one reference to a list, such as '{{inputs}}'")
        needs |= _check_roots(f"{where}, field 'map'", map_t.parts[0], names, s.name, mapped=False)  # type: ignore[arg-type]
    when = None
    if s.when is not None:
        cond = _compiled(f"{where}, field 'when.value'", s.when.value)
        for ref in refs(cond):
            needs |= _check_roots(f"{where}, field 'when.value'", ref, names, s.name, mapped=False)
        when = (cond, s.when)
    for other in s.after:
        if other not in names or other == s.name:
            raise ConfigError(
                f"{where}, field 'after': {other!r} is not another step of this pipeline; steps: {', '.join(names)}"
            )
        needs.add(other)
    return Step(s.name, s.model, s.task, compiled, dict(s.parameters), map_t, when, frozenset(needs))


def _compiled(where: str, value: Any) -> Any:
    try:
        return compile_value(value)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def _check_roots(where: str, ref: Ref, names: list[str], own: str | None, *, mapped: bool) -> set[str]:
    needs = set()
    for root in ref.roots:
        if root == INPUTS:
            continue
        if root == ITEM:
            if not mapped:
                raise ConfigError(f"{where}: {ref.text} names '{ITEM}', which only a step with `map` has")
            continue
        if root == own:
            raise ConfigError(f"{where}: {ref.text} refers to the step itself")
        if root not in names:
            raise ConfigError(
                f"{where}: {ref.text} refers to step {root!r}, which does not exist; steps: {', '.join(names)}"
                f" (or '{INPUTS}' for the request's inputs)"
            )
        needs.add(root)
    return needs


def _check_cycles(pipeline: str, steps: list[Step]) -> None:
    try:
        graphlib.TopologicalSorter({s.name: s.needs for s in steps}).prepare()
    except graphlib.CycleError as e:
        cycle = list(e.args[1])
        raise ConfigError(
            f"pipeline {pipeline!r}, step {cycle[0]!r}: the steps wait for each other in a cycle "
            f"({' -> '.join(reversed(cycle))}); one of them must not refer to the next"
        ) from None
