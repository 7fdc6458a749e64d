"""Tiny random pair models: a cross-encoder (one-label BERT head: rerank, score) and an NLI classifier
(contradiction / neutral / entailment: zero-shot-classification), with the real tiny WordPiece tokenizer."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hf_provider.testing.tiny_tokenizers import wordpiece_tokenizer

# The order of roberta-large-mnli and bart-large-mnli, whose entailment class is last.
NLI_LABELS = ["contradiction", "neutral", "entailment"]


def _bert_pairs(hidden: int, layers: int, labels: list[str] | None) -> Callable[[Path], None]:
    def build(dest: Path) -> None:
        import torch
        import transformers

        tok = wordpiece_tokenizer()
        extra: dict[str, Any] = {"num_labels": 1}
        if labels is not None:
            extra = {"id2label": dict(enumerate(labels)), "label2id": {v: i for i, v in enumerate(labels)}}
        config = transformers.BertConfig(
            vocab_size=len(tok),
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=max(2, hidden // 64),
            intermediate_size=4 * hidden if hidden > 32 else 64,
            max_position_embeddings=512 if hidden > 32 else 128,
            pad_token_id=tok.pad_token_id,
            # wider than BERT's 0.02, so random pairs get scores far enough apart that a ranking is not decided
            # by float rounding
            initializer_range=0.2,
            **extra,
        )
        random.seed(0)
        torch.manual_seed(0)
        transformers.BertForSequenceClassification(config).save_pretrained(dest)
        tok.save_pretrained(dest)

    return build


def tiny_cross_encoder() -> Callable[[Path], None]:
    return _bert_pairs(32, 2, None)


def tiny_nli() -> Callable[[Path], None]:
    return _bert_pairs(32, 2, NLI_LABELS)


def build_sized_cross_encoder(out_dir: Path, hidden: int = 384, layers: int = 6) -> Path:
    """A random cross-encoder of chosen width and depth (384 x 6 is all-MiniLM-L6's shape, ~22M parameters with
    this vocabulary's embeddings), for benchmarks that need real forward-pass costs."""
    from hf_provider.testing.models import _cached

    return _cached(Path(out_dir), f"cross-encoder-h{hidden}-l{layers}", _bert_pairs(hidden, layers, None))
