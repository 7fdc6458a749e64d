"""Request bodies (pydantic) for the HTTP API. OpenAI-compatible where OpenAI has a schema."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    # A field we do not implement (logprobs, tools, logit_bias, ...) is refused with a 400 naming it, never
    # ignored: a client would otherwise believe it was applied. OpenAI's SDK sends only the fields a caller set.
    model_config = ConfigDict(extra="forbid")
    user: str | None = Field(None, description="accepted for compatibility; an end-user tag we do not use")


class EmbeddingsRequest(_Body):
    model: str
    input: str | list[str] = Field(description="a string or a list of strings")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class GenerationBody(_Body):
    """Sampling fields shared by completions and chat completions."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = Field(
        None, description="with stream=true: include_usage adds a last chunk with the token usage"
    )
    seed: int | None = None
    n: int = Field(1, ge=1, le=1, description="only n=1 is supported")


class CompletionRequest(GenerationBody):
    prompt: str | list[str]
    echo: bool = False


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class ChatRequest(GenerationBody):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


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
