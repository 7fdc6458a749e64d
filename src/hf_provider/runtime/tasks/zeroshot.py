"""zero-shot-classification on NLI models, as transformers' ZeroShotClassificationPipeline computes it.

Each (sequence, hypothesis) pair, the hypothesis being `hypothesis_template` filled with one candidate label, is
one Item: the hypotheses of several requests share batches. The answer per sequence is assembled from its pairs'
logits with the pipeline's own arithmetic (softmax of the entailment logits over the labels, or with multi_label
entailment against contradiction per label), so scores, labels and their order match the pipeline.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from hf_provider.errors import InvalidInput, TooManyItems
from hf_provider.runtime.model import LoadedModel
from hf_provider.runtime.tasks.base import BaseHandler, bool_param
from hf_provider.runtime.tasks.pairs import check_total, head_logits, pad_pairs, tokenize_pairs
from hf_provider.types import Item, RowControl

DEFAULT_TEMPLATE = "This example is {}."


def entailment_id(model: LoadedModel) -> int | None:
    """The entailment class: the first label2id entry whose name starts with "entail" (the pipeline's rule)."""
    for label, index in (getattr(model.config, "label2id", None) or {}).items():
        if str(label).lower().startswith("entail"):
            return int(index)
    return None


class ZeroShotClassification(BaseHandler):
    task = "zero-shot-classification"
    allowed_params = frozenset({"candidate_labels", "hypothesis_template", "multi_label", "truncate"})

    @classmethod
    def unsupported_reason(cls, model: LoadedModel) -> str | None:
        arch = model.architecture
        if not arch.endswith("ForSequenceClassification"):
            return f"{arch} has no *ForSequenceClassification head (an NLI model is needed)"
        if entailment_id(model) is None:
            labels = ", ".join(str(v) for v in (model.config.id2label or {}).values())
            return f"its labels ({labels}) name no entailment class; zero-shot needs an NLI model"
        return None

    def __init__(self, model: LoadedModel, defaults: Mapping[str, Any] | None = None) -> None:
        super().__init__(model, defaults)
        found = entailment_id(model)
        assert found is not None  # build_handler checked unsupported_reason
        self.entailment = found

    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        merged = self.check_params(params)
        labels = self._labels(merged.get("candidate_labels"))
        template = merged.get("hypothesis_template", DEFAULT_TEMPLATE)
        if not isinstance(template, str) or template.format(labels[0]) == template:
            raise InvalidInput(
                f"'hypothesis_template' must be a string with {{}} where the label goes, got {template!r}",
                param="hypothesis_template",
            )
        merged["hypothesis_template"] = template
        merged["multi_label"] = bool_param(merged, "multi_label", False)
        merged["candidate_labels"] = labels
        texts, single = self.as_text_list(inputs, self.max_items)
        check_total(self, len(texts) * len(labels), f"{len(texts)} input(s) x {len(labels)} candidate labels")
        pairs = [(t, template.format(label)) for t in texts for label in labels]
        n = len(labels)
        items = tokenize_pairs(
            self,
            pairs,
            merged.get("truncate", False),
            "only_first",  # the pipeline's truncation: the sequence, never the hypothesis
            lambda i: f"input {i // n} with the hypothesis of label {labels[i % n]!r}",
        )
        merged["_sequences"] = texts
        return items, merged, single

    def _labels(self, value: Any) -> list[str]:
        # The pipeline's parsing: a string is a comma-separated list.
        labels = [x.strip() for x in value.split(",") if x.strip()] if isinstance(value, str) else value
        if not isinstance(labels, list) or not labels:
            raise InvalidInput(
                "'candidate_labels' must name at least one label (a list of strings, or one comma-separated "
                "string)",
                param="candidate_labels",
            )
        limit = self.model.spec.batching.max_candidate_labels
        if len(labels) > limit:
            raise TooManyItems(
                f"'candidate_labels' has {len(labels)} labels; at most {limit} are accepted per request "
                "(models.<name>.batching.max_candidate_labels)",
                param="candidate_labels",
            )
        for i, label in enumerate(labels):
            if not isinstance(label, str) or not label.strip():
                raise InvalidInput(
                    f"'candidate_labels[{i}]' must be a non-empty string", param="candidate_labels"
                )
        return labels

    def batch_key(self, params: Mapping[str, Any]) -> Hashable:
        # Hypotheses are built in parse and labels are read per request in assemble: every request shares batches.
        return ()

    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any:
        return pad_pairs(self, items)

    def forward(self, batch: Any, params: Mapping[str, Any], control: RowControl | None = None) -> Any:
        return head_logits(self.model, batch)

    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        return list(outputs.float().cpu().numpy())  # each pair's logits

    def assemble(self, results: list[Any], params: Mapping[str, Any], single: bool) -> Any:
        labels = params["candidate_labels"]
        n = len(labels)
        logits = np.asarray(results, dtype=np.float32).reshape(len(params["_sequences"]), n, -1)
        # transformers' ZeroShotClassificationPipeline.postprocess, per sequence
        if params["multi_label"] or n == 1:
            contradiction = -1 if self.entailment == 0 else 0
            pair = logits[..., [contradiction, self.entailment]]
            scores = (np.exp(pair) / np.exp(pair).sum(-1, keepdims=True))[..., 1]
        else:
            entail = logits[..., self.entailment]
            scores = np.exp(entail) / np.exp(entail).sum(-1, keepdims=True)
        out = []
        for seq, row in zip(params["_sequences"], scores, strict=True):
            top = list(reversed(row.argsort()))
            out.append({"sequence": seq, "labels": [labels[i] for i in top], "scores": row[top].tolist()})
        return out[0] if single else out
