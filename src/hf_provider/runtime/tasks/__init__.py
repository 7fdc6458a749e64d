"""Task handlers by task name, and which of them a loaded model's architecture can serve."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hf_provider.errors import TaskNotSupported
from hf_provider.runtime.model import LoadedModel
from hf_provider.runtime.tasks.base import BaseHandler
from hf_provider.runtime.tasks.classification import FillMask, TextClassification, TokenClassification
from hf_provider.runtime.tasks.embeddings import Embeddings
from hf_provider.runtime.tasks.generation import TextGeneration
from hf_provider.runtime.tasks.qa import QuestionAnswering
from hf_provider.runtime.tasks.rerank import Rerank, Score
from hf_provider.runtime.tasks.seq2seq import Summarization, Text2TextGeneration, Translation
from hf_provider.runtime.tasks.zeroshot import ZeroShotClassification

HANDLERS: dict[str, type[BaseHandler]] = {
    h.task: h
    for h in (
        Embeddings,
        TextClassification,
        TokenClassification,
        FillMask,
        TextGeneration,
        Text2TextGeneration,
        Translation,
        Summarization,
        QuestionAnswering,
        Rerank,
        Score,
        ZeroShotClassification,
    )
}


def supported_tasks(model: LoadedModel) -> list[str]:
    """Every task the model's architecture can serve, in the order of `HANDLERS`."""
    return [task for task, h in HANDLERS.items() if h.unsupported_reason(model) is None]


def build_handler(task: str, model: LoadedModel, defaults: Mapping[str, Any] | None = None) -> BaseHandler:
    handler = HANDLERS.get(task)
    reason = "unknown task" if handler is None else handler.unsupported_reason(model)
    if handler is None or reason is not None:
        raise TaskNotSupported(model.name, task, supported_tasks(model), reason)
    return handler(model, defaults)


__all__ = ["HANDLERS", "BaseHandler", "build_handler", "supported_tasks"]
