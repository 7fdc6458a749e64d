"""`[[pipelines]]` in hfp.toml: the shape of a pipeline's declaration (names, steps, templates as written).

Only the shape is checked here; what refers to what (models, tasks, steps, cycles) is checked when the Provider
starts (pipelines/plan.py), where the configured models are known, with messages naming pipeline, step and field.

    [[pipelines]]
    name = "digest"
    steps = [
      { name = "translate", model = "t5", task = "translation", parameters = { max_new_tokens = 64 } },
      { name = "summary", model = "t5", task = "summarization", input = "{translate.text}" },
    ]
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"


class ConditionSpec(BaseModel):
    """`when = { value = "{classify.label}", equals = "POSITIVE" }`: the step runs only when the value (a
    template over the request and earlier steps) compares as asked; otherwise it is skipped."""

    model_config = ConfigDict(extra="forbid")

    value: str = Field(description="a template, such as '{classify.label}'")
    equals: Any = None
    not_equals: Any = None
    one_of: list[Any] | None = None

    @model_validator(mode="after")
    def _one_test(self) -> ConditionSpec:
        given = [k for k in ("equals", "not_equals", "one_of") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a condition takes exactly one of equals, not_equals, one_of; got {given or 'none'}"
            )
        return self

    def holds(self, value: Any) -> bool:
        if self.equals is not None:
            return bool(value == self.equals)
        if self.not_equals is not None:
            return bool(value != self.not_equals)
        return value in (self.one_of or [])


class StepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, max_length=64)
    model: str = Field(min_length=1, description="a configured model's name")
    task: str = Field(min_length=1)
    input: Any = Field(
        None,
        description="a template ('{translate.text}', '{inputs.question}'), or a list / table of them (fan-in); "
        "None: the request's inputs for the first step, the previous step's text for a later one",
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="the model's parameters for this step"
    )
    map: str | None = Field(
        None,
        description="a template naming a list ('{inputs.documents}'): the step runs once per item ('{item}' in "
        "its input), all items in one batched request",
    )
    when: ConditionSpec | None = Field(None, description="run only when this holds; otherwise skipped")
    after: list[str] = Field(default_factory=list, description="steps this one waits for beyond its inputs")


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, max_length=64)
    description: str | None = None
    steps: list[StepSpec] = Field(min_length=1)
    output: Any = Field(
        None, description="a template of the answer; None: the output of the last step that ran"
    )
