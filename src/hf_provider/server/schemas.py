"""Request bodies (pydantic) for the HTTP API. OpenAI-compatible where OpenAI has a schema.

Which OpenAI fields are honoured and which are refused is one table (server/openai_fields.py): a refused field
sent at its default is dropped before validation, at any other value it gets 400 `unsupported_parameter` naming
it, never ignored (a client would otherwise believe it was applied). Fields whose JSON type is a union (`input`,
`prompt`, `stop`) are checked by hand so the error names the field and what it takes, not the validation
library's branch-by-branch report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from hf_provider.server import openai_fields as F


def _check_fields(fields: Mapping[str, F.Field], data: Any) -> Any:
    if isinstance(data, dict):
        for name, value in data.items():
            f = fields.get(name)
            refused = f is None or (f.status == F.REFUSED and not any(F._same(value, o) for o in f.off))
            if refused:
                raise PydanticCustomError(
                    "unsupported_parameter", F.refused_message(fields, name), {"param": name}
                )
    return F.drop_off(fields, data)


class _OpenAIBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    FIELDS: ClassVar[Mapping[str, F.Field]] = {}

    @model_validator(mode="before")
    @classmethod
    def _fields(cls, data: Any) -> Any:
        return _check_fields(cls.FIELDS, data)


def _is_ids(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(t, int) and not isinstance(t, bool) for t in v)


def text_or_ids(v: Any, name: str) -> Any:
    """A string, a non-empty list of strings, a list of token ids, or a non-empty list of token-id lists."""
    if isinstance(v, str):
        return v
    what = f"'{name}' must be a string, a list of strings, a list of token ids or a list of token-id lists"
    if not isinstance(v, list):
        raise ValueError(f"{what}; got {type(v).__name__}")
    if not v:
        raise ValueError(f"'{name}' is an empty list; send at least one input")
    if all(isinstance(x, str) for x in v) or _is_ids(v) or all(_is_ids(x) for x in v):
        return v
    raise ValueError(f"{what}; got a list mixing other types")


def _content_part(x: Any) -> bool:
    """An OpenAI content part an image-text model reads: {'type': 'text' | 'image_url', ...}."""
    return isinstance(x, dict) and x.get("type") in ("text", "image_url")


class EmbeddingsRequest(_OpenAIBody):
    FIELDS: ClassVar[Mapping[str, F.Field]] = F.EMBEDDINGS
    model: str
    input: Any = Field(
        description="a string, a list of strings, token ids, or a list of token-id lists; for an image-text model "
        "(CLIP) also images: data:image/... URIs, or OpenAI content parts {'type': 'image_url', 'image_url': "
        "{'url': ...}} / {'type': 'text', ...}"
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None
    truncate: bool | None = Field(None, description="hf-provider extension: cut inputs to the model's length")
    modality: Literal["auto", "text", "image"] | None = Field(
        None,
        description="image-text models: 'text' or 'image' says what every string input is (default: auto)",
    )

    @field_validator("input")
    @classmethod
    def _input(cls, v: Any) -> Any:
        parts = isinstance(v, list) and any(isinstance(x, dict) for x in v)
        if parts and all(isinstance(x, str) or _content_part(x) for x in v):
            return v  # content parts: the image-text handler reads them (runtime/tasks/image_text.py)
        return text_or_ids(v, "input")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False
    include_obfuscation: bool | None = Field(None, description="accepted; chunks are never padded here")


class GenerationBody(_OpenAIBody):
    """Sampling fields shared by completions and chat completions."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: Any = None
    stream: bool | None = False
    stream_options: StreamOptions | None = Field(
        None, description="with stream=true: include_usage adds a last chunk with the token usage"
    )
    seed: int | None = None
    user: str | None = None
    truncate: bool | None = Field(
        None, description="hf-provider extension: cut the prompt from the left to fit"
    )
    n: int | None = Field(1, ge=1, le=16)
    response_format: dict[str, Any] | None = Field(
        None,
        description='{"type": "text" | "json_object" | "json_schema", "json_schema": {"name", "schema"}}',
    )
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: Any) -> Any:
        if v is None or isinstance(v, str):
            return v
        if isinstance(v, list) and all(isinstance(s, str) for s in v):
            return v
        raise ValueError("'stop' must be a string or a list of up to 4 strings")


class CompletionRequest(GenerationBody):
    FIELDS: ClassVar[Mapping[str, F.Field]] = F.COMPLETIONS
    prompt: Any
    echo: bool | None = False
    logprobs: int | None = Field(None, ge=0, le=5)
    best_of: int | None = Field(None, ge=1, le=16)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: Any) -> Any:
        return text_or_ids(v, "prompt")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None


class ChatRequest(GenerationBody):
    FIELDS: ClassVar[Mapping[str, F.Field]] = F.CHAT
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    safety_identifier: str | None = None
    logprobs: bool | None = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None


class TaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    inputs: Any
    parameters: dict[str, Any] = Field(default_factory=dict)


class PipelineRequest(BaseModel):
    """POST /v1/pipelines/{name}: `parameters` per step ({step: {name: value}}) over the configured ones."""

    model_config = ConfigDict(extra="forbid")
    inputs: Any
    parameters: dict[str, dict[str, Any]] = Field(default_factory=dict)
    return_steps: bool = Field(False, description="add every step's output, model, task and latency")
    stream: bool = Field(False, description="stream the last step's text (server-sent events)")
