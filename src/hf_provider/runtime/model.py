"""LoadedModel: one weight set in memory and the task handlers that share it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_provider.settings.media import MediaSettings

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

    from hf_provider.runtime.tasks.base import TaskHandler
    from hf_provider.spec import ModelSpec


@dataclass(eq=False)
class LoadedModel:
    """Everything a task handler needs. Handlers keep references to `module`, never copies.

    `module` is the single `nn.Module` holding the weights. For sentence-transformers checkpoints `sentence_model`
    is the `SentenceTransformer` wrapping that same module (its first module's `auto_model` *is* the base of
    `module`), so pooling and normalization follow the checkpoint's own configuration.
    """

    spec: ModelSpec
    path: Path  # local snapshot folder
    commit: str | None  # exact Hub commit; None for a plain local folder
    module: torch.nn.Module
    config: PretrainedConfig
    tokenizer: PreTrainedTokenizerBase  # None for a model without one (a ViT reads only images)
    device: torch.device
    dtype: torch.dtype
    weight_bytes: int
    architecture: str  # e.g. "T5ForConditionalGeneration", "BertModel"
    sentence_model: Any = None  # SentenceTransformer | None
    feature_extractor: Any = None  # speech models: audio -> input features (runtime/tasks/speech.py)
    handlers: dict[str, TaskHandler] = field(default_factory=dict)
    load_seconds: float = 0.0
    # A fast tokenizer keeps truncation/padding settings as state on its Rust backend and every call with other
    # settings rewrites them, so concurrent calls (request threads parse while the collector preprocesses) can
    # truncate with another call's settings. Every call that encodes holds this lock.
    tokenizer_lock: threading.Lock = field(default_factory=threading.Lock)
    fast_encoder: Any = None  # tasks.encoding.FastEncoder when it mirrors the tokenizer exactly
    # optimize (optimize/): an exported graph (ONNX Runtime, OpenVINO) called in place of the module by the encoder
    # handlers, and the variant serving ("eager" unless `optimize` chose another)
    backend: Any = None
    variant: str = "eager"
    # the encoder trunk its handlers share in a mixed batch (runtime/tasks/trunk.py), built on first use
    trunk: Any = None
    # images (runtime/media, runtime/tasks/vision.py): the checkpoint's image processor (None: it reads no
    # images) and the `[media]` limits every image input is checked against, set by the model manager
    image_processor: Any = None
    media: MediaSettings = field(default_factory=MediaSettings)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def tasks(self) -> list[str]:
        return list(self.handlers)

    @property
    def max_length(self) -> int:
        """Longest input in tokens this model accepts."""
        if self.spec.max_length:
            return self.spec.max_length
        if self.sentence_model is not None and getattr(self.sentence_model, "max_seq_length", None):
            return int(self.sentence_model.max_seq_length)
        for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            v = getattr(self.config, attr, None)
            if isinstance(v, int) and v > 0:
                return v
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        return tok_max if isinstance(tok_max, int) and tok_max < 1_000_000 else 512

    def info(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "source": self.spec.source,
            "revision": self.spec.revision,
            "commit": self.commit,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "tasks": self.tasks,
            "weight_bytes": self.weight_bytes,
        }
