"""rerank and score: the relevance of text pairs, by a cross-encoder or, when asked, by embedding cosine.

A cross-encoder (one-label sequence-classification head) scores each (query, document) pair in one forward pass;
each pair is an Item, so the pairs of several requests share batches. An embedding model (a sentence-transformers
checkpoint) ranks by the cosine of its embeddings when the caller asks for method="cosine": the query and the
documents are embedded as items through the embeddings handler's own stages, and the answer says "cosine".
The request's answer (a ranking, a list of scores) is assembled from all its items' results in `assemble`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from hf_provider.errors import InvalidInput
from hf_provider.runtime.model import LoadedModel
from hf_provider.runtime.tasks.base import BaseHandler, bool_param, int_param
from hf_provider.runtime.tasks.embeddings import Embeddings
from hf_provider.runtime.tasks.pairs import (
    COSINE,
    CROSS_ENCODER,
    METHODS,
    check_total,
    head_logits,
    pad_pairs,
    pair_method,
    pair_unsupported,
    sigmoid,
    text_list,
    text_value,
    tokenize_pairs,
)
from hf_provider.types import Item, RowControl

_EMBED_PARAMS = {"normalize": True, "dimensions": None}


class _PairTask(BaseHandler):
    """What rerank and score share: the model's method, its stages, and how a pair's score is read."""

    def __init__(self, model: LoadedModel, defaults: Mapping[str, Any] | None = None) -> None:
        super().__init__(model, defaults)
        method = pair_method(model)
        assert method is not None  # build_handler checked unsupported_reason
        self.method = method
        # composition: a bi-encoder's texts go through the embeddings handler's own parse and stages
        self.embed = Embeddings(model) if method == COSINE else None

    @classmethod
    def unsupported_reason(cls, model: LoadedModel) -> str | None:
        return pair_unsupported(model)

    def resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        merged = self.check_params(params)
        method = merged.get("method")
        if method is not None and method not in METHODS:
            raise InvalidInput(
                f"'method' must be one of {', '.join(METHODS)}, got {method!r}", param="method"
            )
        if method is None and self.method == COSINE:
            raise InvalidInput(
                f'model {self.model.name!r} is an embedding model, not a cross-encoder; pass method="cosine" to '
                "rank by the cosine similarity of its embeddings",
                param="method",
            )
        if method is not None and method != self.method:
            what = "a cross-encoder" if self.method == CROSS_ENCODER else "an embedding model"
            raise InvalidInput(
                f"model {self.model.name!r} is {what}: it scores by method {self.method!r}, not {method!r}",
                param="method",
            )
        merged["method"] = self.method
        merged["raw_scores"] = bool_param(merged, "raw_scores", False)
        if merged["raw_scores"] and self.method == COSINE:
            raise InvalidInput(
                "'raw_scores' applies to cross-encoders; a cosine is already raw", param="raw_scores"
            )
        merged["truncate"] = merged.get("truncate", False)
        return merged

    def items_for(
        self, pairs: list[tuple[str, str]], texts: list[str], merged: Mapping[str, Any]
    ) -> list[Item]:
        """A cross-encoder's pairs, or the texts an embedding model embeds (each once)."""
        if self.embed is None:
            check_total(self, len(pairs), "the pairs")
            return tokenize_pairs(self, pairs, merged["truncate"], "longest_first", self._pair_name)
        check_total(self, len(texts), "the texts to embed")
        items, _, _ = self.embed.parse(texts, {"truncate": merged["truncate"]})
        return items

    def _pair_name(self, i: int) -> str:
        return f"text {i}"

    def batch_key(self, params: Mapping[str, Any]) -> Hashable:
        # Truncation happened in parse and every answer is assembled per request: all requests share batches.
        return self.method

    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any:
        if self.embed is not None:
            return self.embed.preprocess(items, _EMBED_PARAMS)
        return pad_pairs(self, items)

    def forward(self, batch: Any, params: Mapping[str, Any], control: RowControl | None = None) -> Any:
        if self.embed is not None:
            return self.embed.forward(batch, _EMBED_PARAMS)
        return head_logits(self.model, batch)

    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        if self.embed is not None:
            return self.embed.postprocess(batch, outputs, _EMBED_PARAMS)  # unit vectors
        return outputs[:, 0].float().cpu().tolist()  # one logit per pair

    @staticmethod
    def scores(
        results: list[Any], params: Mapping[str, Any], firsts: list[int], seconds: list[int]
    ) -> list[float]:
        """The score of each pair: sigmoid of the cross-encoder's logit (or the logit with raw_scores), or the
        cosine of two unit vectors (items `firsts[k]` and `seconds[k]`)."""
        if params["method"] == COSINE:
            return [float(np.dot(results[a], results[b])) for a, b in zip(firsts, seconds, strict=True)]
        return [float(x) if params["raw_scores"] else sigmoid(x) for x in results]


class Rerank(_PairTask):
    """inputs {"query": str, "documents": [str | {"text": str}]}; answer {"method", "results": [{"index",
    "relevance_score", "document"?}]}, best first (ties keep document order)."""

    task = "rerank"
    allowed_params = frozenset({"top_n", "return_documents", "method", "raw_scores", "truncate"})

    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        merged = self.resolve(params)
        if not isinstance(inputs, dict) or set(inputs) != {"query", "documents"}:
            raise InvalidInput(
                "'inputs' must be an object with exactly the keys query (a string) and documents (a list)",
                param="inputs",
            )
        query = text_value(inputs.get("query"), "query")
        limit = self.model.spec.batching.max_documents
        docs = text_list(inputs.get("documents"), "documents", limit, "models.<name>.batching.max_documents")
        merged["top_n"] = int_param(merged, "top_n", None, 1)
        merged["return_documents"] = bool_param(merged, "return_documents", False)
        items = self.items_for([(query, d) for d in docs], [query, *docs], merged)
        merged["_n"] = len(docs)
        if merged["return_documents"]:
            merged["_documents"] = docs
        return items, merged, False

    def _pair_name(self, i: int) -> str:
        return f"the query with document {i}"

    def assemble(self, results: list[Any], params: Mapping[str, Any], single: bool) -> dict[str, Any]:
        n = params["_n"]
        if params["method"] == COSINE:  # item 0 is the query
            scores = self.scores(results, params, [0] * n, list(range(1, n + 1)))
        else:
            scores = self.scores(results, params, [], [])
        order = sorted(range(n), key=lambda i: -scores[i])[: params["top_n"] or n]
        docs = params.get("_documents")
        return {
            "method": params["method"],
            "results": [
                {
                    "index": i,
                    "relevance_score": scores[i],
                    **({"document": {"text": docs[i]}} if docs else {}),
                }
                for i in order
            ],
        }


class Score(_PairTask):
    """inputs {"text_1": str | [str], "text_2": str | [str]}: one pair, one text against many, or pairs
    index by index; answer {"method", "scores": [float]} in pair order."""

    task = "score"
    allowed_params = frozenset({"method", "raw_scores", "truncate"})

    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        merged = self.resolve(params)
        if not isinstance(inputs, dict) or set(inputs) != {"text_1", "text_2"}:
            raise InvalidInput(
                '\'inputs\' must be an object {"text_1": str | [str], "text_2": str | [str]}', param="inputs"
            )
        limit = self.model.spec.batching.max_documents
        setting = "models.<name>.batching.max_documents"
        side = [
            [text_value(v, key)] if isinstance(v, str) else text_list(v, key, limit, setting)
            for key, v in (("text_1", inputs["text_1"]), ("text_2", inputs["text_2"]))
        ]
        one, two = side
        if len(one) == 1:
            pairs = [(one[0], b) for b in two]
            texts, firsts, seconds = [one[0], *two], [0] * len(two), list(range(1, len(two) + 1))
        elif len(one) == len(two):
            pairs = list(zip(one, two, strict=True))
            n = len(one)
            texts, firsts, seconds = [*one, *two], list(range(n)), list(range(n, 2 * n))
        else:
            raise InvalidInput(
                f"'text_1' has {len(one)} texts and 'text_2' {len(two)}: give one text_1 against any number of "
                "text_2, or lists of the same length (scored index by index)",
                param="text_2",
            )
        items = self.items_for(pairs, texts, merged)
        merged["_pairs"] = (firsts, seconds)
        return items, merged, False

    def _pair_name(self, i: int) -> str:
        return f"pair {i}"

    def assemble(self, results: list[Any], params: Mapping[str, Any], single: bool) -> dict[str, Any]:
        firsts, seconds = params["_pairs"]
        return {"method": params["method"], "scores": self.scores(results, params, firsts, seconds)}
