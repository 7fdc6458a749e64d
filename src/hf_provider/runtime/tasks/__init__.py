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
from hf_provider.runtime.tasks.image_text import ImageTextEmbeddings
from hf_provider.runtime.tasks.qa import QuestionAnswering
from hf_provider.runtime.tasks.rerank import Rerank, Score
from hf_provider.runtime.tasks.seq2seq import Summarization, Text2TextGeneration, Translation
from hf_provider.runtime.tasks.speech import SpeechRecognition
from hf_provider.runtime.tasks.vision import ImageClassification, ZeroShotImageClassification
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
        ImageClassification,
        ZeroShotImageClassification,
        SpeechRecognition,
    )
}

#: Handlers that serve a task in place of its general handler for the architectures they accept, first match
#: wins: a CLIP's embeddings take images as well as texts.
VARIANTS: dict[str, tuple[type[BaseHandler], ...]] = {"embeddings": (ImageTextEmbeddings,)}


def handler_class(task: str, model: LoadedModel) -> type[BaseHandler] | None:
    for variant in VARIANTS.get(task, ()):
        if variant.unsupported_reason(model) is None:
            return variant
    return HANDLERS.get(task)


def _reason(handler: type[BaseHandler], model: LoadedModel) -> str | None:
    # a speech model's encoder reads audio features: text handlers that accept any encoder(-decoder) must not
    # claim it (Whisper is an encoder-decoder)
    if model.feature_extractor is not None and not handler.audio:
        return f"{model.architecture} is a speech model: it serves automatic-speech-recognition"
    return handler.unsupported_reason(model)


def supported_tasks(model: LoadedModel) -> list[str]:
    """Every task the model's architecture can serve, in the order of `HANDLERS`."""
    return [t for t in HANDLERS if (h := handler_class(t, model)) and _reason(h, model) is None]


def build_handler(task: str, model: LoadedModel, defaults: Mapping[str, Any] | None = None) -> BaseHandler:
    handler = handler_class(task, model)
    reason = "unknown task" if handler is None else _reason(handler, model)
    if handler is None or reason is not None:
        raise TaskNotSupported(model.name, task, supported_tasks(model), reason)
    return handler(model, defaults)


__all__ = ["HANDLERS", "BaseHandler", "build_handler", "supported_tasks"]
