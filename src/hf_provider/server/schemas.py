"""Request bodies (pydantic) for the HTTP API. OpenAI-compatible where OpenAI has a schema."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    # OpenAI clients send fields we do not use (user, logit_bias...): accept and ignore them.
    model_config = ConfigDict(extra="ignore")


class EmbeddingsRequest(_Body):
    model: str
    input: str | list[str] = Field(description="a string or a list of strings")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)


class _GenerationBody(_Body):
    """Sampling fields shared by completions and chat completions."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    seed: int | None = None
    n: int = Field(1, ge=1, le=1, description="only n=1 is supported")


class CompletionRequest(_GenerationBody):
    prompt: str | list[str]
    echo: bool = False


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(_GenerationBody):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class TaskRequest(_Body):
    model: str
    inputs: Any
    parameters: dict[str, Any] = Field(default_factory=dict)
