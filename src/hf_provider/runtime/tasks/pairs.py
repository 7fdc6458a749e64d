"""Text pairs through one forward pass: the shared core of rerank, score and zero-shot-classification.

A cross-encoder reads a pair (query and document, premise and hypothesis) as one sequence with the tokenizer's
own pair template, so each pair is one Item: pairs of several requests share batches like any other items.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from hf_provider.errors import InvalidInput, TooManyItems
from hf_provider.runtime.model import LoadedModel
from hf_provider.runtime.tasks.base import BaseHandler
from hf_provider.types import Item

ENCODER_KEYS = ("input_ids", "attention_mask", "token_type_ids")
CROSS_ENCODER, COSINE = "cross-encoder", "cosine"
METHODS = (CROSS_ENCODER, COSINE)


def is_cross_encoder(model: LoadedModel) -> bool:
    """A sequence-classification head with one output: the score of a pair (sentence-transformers' CrossEncoder,
    TEI's and vLLM's rerankers)."""
    return model.architecture.endswith("ForSequenceClassification") and model.config.num_labels == 1


def pair_method(model: LoadedModel) -> str | None:
    """How this model scores a pair: as a cross-encoder, by the cosine of its embeddings (a sentence-transformers
    checkpoint declares itself an embedding model), or not at all."""
    if is_cross_encoder(model):
        return CROSS_ENCODER
    if model.sentence_model is not None:
        return COSINE
    return None


def pair_unsupported(model: LoadedModel) -> str | None:
    if pair_method(model) is not None:
        return None
    arch = model.architecture
    if arch.endswith("ForSequenceClassification"):
        return (
            f"{arch} has {model.config.num_labels} labels; a cross-encoder has one (num_labels=1), and it is not "
            "a sentence-transformers embedding model (ranked by cosine) either"
        )
    return (
        f"{arch} is neither a cross-encoder (*ForSequenceClassification with one label) nor a "
        "sentence-transformers embedding model (ranked by cosine)"
    )


def text_list(value: Any, param: str, limit: int, setting: str) -> list[str]:
    """A non-empty list of non-empty strings (a Cohere document object {"text": ...} counts as its text), at most
    `limit` long; errors name the field as the client sent it and the setting that bounds it."""
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"'{param}' must be a non-empty list of strings", param=param)
    if len(value) > limit:
        raise TooManyItems(
            f"'{param}' has {len(value)} items; at most {limit} are accepted per request ({setting})",
            param=param,
        )
    out = []
    for i, v in enumerate(value):
        if isinstance(v, dict) and set(v) == {"text"}:
            v = v["text"]
        if not isinstance(v, str):
            raise InvalidInput(
                f"'{param}[{i}]' must be a string or an object {{\"text\": ...}}, got {type(v).__name__}",
                param=param,
            )
        if not v.strip():
            raise InvalidInput(f"'{param}[{i}]' is empty", param=param)
        out.append(v)
    return out


def text_value(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"'{param}' must be a non-empty string", param=param)
    return value


def check_total(handler: BaseHandler, n: int, what: str) -> None:
    """The items of one request (pairs, or texts to embed) within `max_items_per_request`."""
    limit = handler.max_items
    if n > limit:
        raise TooManyItems(
            f"{what} make {n} inputs; at most {limit} are accepted per request "
            "(models.<name>.batching.max_items_per_request)",
            param="inputs",
        )


def tokenize_pairs(
    handler: BaseHandler,
    pairs: Sequence[tuple[str, str]],
    truncate: bool,
    strategy: str,
    name: Callable[[int], str],
) -> list[Item]:
    """One Item per pair, as `tokenizer(firsts, seconds)` encodes it (the lock-free Rust copy when the model has
    one). A pair over the model's limit is an error naming it (`name(i)`), or with `truncate` is cut by
    `strategy` ("only_first": the premise, as transformers' zero-shot pipeline does; "longest_first")."""
    model = handler.model
    limit = model.max_length
    fast = model.fast_encoder
    if fast is not None:
        rows = fast.encode_pairs(pairs)
    else:
        with model.tokenizer_lock:
            enc = model.tokenizer([a for a, _ in pairs], [b for _, b in pairs], truncation=False)
        rows = [{k: list(v[i]) for k, v in enc.items()} for i in range(len(pairs))]
    for i, (a, b) in enumerate(pairs):
        n = len(rows[i]["input_ids"])
        if n <= limit:
            continue
        if not truncate:
            raise InvalidInput(
                f"{name(i)} is {n} tokens long; this model accepts at most {limit} tokens "
                "(pass parameter truncate=true to cut it)",
                param="inputs",
                task=handler.task,
            )
        rows[i] = _truncated(handler, a, b, strategy, limit, name(i))
    return [Item(data=r, n_tokens=len(r["input_ids"])) for r in rows]


def _truncated(handler: BaseHandler, a: str, b: str, strategy: str, limit: int, name: str) -> dict[str, Any]:
    model = handler.model
    try:
        with model.tokenizer_lock:
            one = model.tokenizer([a], [b], truncation=strategy, max_length=limit)
    except Exception as exc:  # the tokenizer refuses when the part it may cut cannot make room
        raise InvalidInput(f"{name} cannot be cut to {limit} tokens: {exc}", param="inputs") from exc
    row = {k: list(v[0]) for k, v in one.items()}
    if len(row["input_ids"]) > limit:
        raise InvalidInput(
            f"{name} cannot be cut to {limit} tokens by cutting only the part allowed ({strategy})",
            param="inputs",
        )
    return row


def pad_pairs(handler: BaseHandler, items: list[Item]) -> dict[str, Any]:
    return {"inputs": handler.pad([it.data for it in items], keys=ENCODER_KEYS)}


def head_logits(model: LoadedModel, batch: dict[str, Any]) -> Any:
    """[rows, labels] logits of the sequence-classification head (an exported backend when optimize chose one)."""
    return (model.backend or model.module)(**batch["inputs"]).logits


def sigmoid(x: float) -> float:
    """The score transformers' text-classification pipeline and sentence-transformers' CrossEncoder give a
    one-label head."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
