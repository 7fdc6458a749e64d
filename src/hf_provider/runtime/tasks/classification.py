"""text-classification, token-classification and fill-mask on encoder heads."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

from hf_provider.errors import InvalidInput
from hf_provider.runtime.model import LoadedModel
from hf_provider.runtime.tasks.base import BaseHandler, int_param
from hf_provider.runtime.tasks.trunk import ENCODER_KEYS, TRUNK_KEY, head_of
from hf_provider.types import Item, RowControl


def _needs_suffix(model: LoadedModel, suffix: str) -> str | None:
    if model.architecture.endswith(suffix):
        return None
    return f"{model.architecture} has no *{suffix} head"


class _EncoderHandler(BaseHandler):
    """Tokenize, pad, one forward pass returning logits; subclasses read them."""

    tokenize_kwargs: ClassVar[Mapping[str, Any]] = {}

    def items(self, inputs: Any, merged: Mapping[str, Any]) -> tuple[list[Item], bool]:
        texts, single = self.as_text_list(inputs, self.max_items)
        rows = self.tokenize(texts, merged.get("truncate", False), **self.tokenize_kwargs)
        for text, row in zip(texts, rows, strict=True):
            row["text"] = text
        return [Item(data=r, n_tokens=len(r["input_ids"])) for r in rows], single

    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any:
        rows = [it.data for it in items]
        return {"inputs": self.pad(rows, keys=ENCODER_KEYS), "rows": rows}

    def forward(self, batch: Any, params: Mapping[str, Any], control: RowControl | None = None) -> Any:
        return (self.model.backend or self.model.module)(**batch["inputs"]).logits

    # a shared trunk (runtime/tasks/trunk.py): the base model, then the checkpoint's head (checked once)
    def trunk_key(self, params: Mapping[str, Any]) -> Hashable | None:
        m = self.model
        if m.backend is not None or m.config.is_encoder_decoder:
            return None  # an exported graph is not the base model's computation
        return TRUNK_KEY if head_of(m) is not None else None

    def trunk_data(self, inputs: dict[str, Any], rows: list[Any]) -> Any:
        return {"inputs": inputs, "rows": rows}

    def head(self, data: Any, trunk_out: Any) -> Any:
        head = head_of(self.model)
        assert head is not None  # a trunk key was given only with a head
        return head(trunk_out)


class TextClassification(_EncoderHandler):
    task = "text-classification"
    allowed_params = frozenset({"top_k", "truncate"})

    @classmethod
    def unsupported_reason(cls, model: LoadedModel) -> str | None:
        return _needs_suffix(model, "ForSequenceClassification")

    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        merged = self.check_params(params)
        merged["top_k"] = int_param(merged, "top_k", 1, 1, self.model.config.num_labels)
        items, single = self.items(inputs, merged)
        return items, merged, single

    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        import torch

        logits = outputs.float()
        multi = getattr(self.model.config, "problem_type", None) == "multi_label_classification"
        probs = torch.sigmoid(logits) if multi else torch.softmax(logits, dim=-1)
        scores, idx = probs.topk(params["top_k"], dim=-1)
        labels = self.model.config.id2label
        return [
            [{"label": labels[i], "score": s} for s, i in zip(srow, irow, strict=True)]
            for srow, irow in zip(scores.cpu().tolist(), idx.cpu().tolist(), strict=True)
        ]


def _tag(label: str) -> tuple[str, str]:
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


class TokenClassification(_EncoderHandler):
    """Entities with the "simple" aggregation of transformers' pipeline: B-/I- tokens of one type merge into a
    span; the span's text comes from the character offsets, so it is exactly the caller's text."""

    task = "token-classification"
    allowed_params = frozenset({"truncate", "ignore_labels"})
    tokenize_kwargs: ClassVar[Mapping[str, Any]] = {
        "return_offsets_mapping": True,
        "return_special_tokens_mask": True,
    }

    @classmethod
    def unsupported_reason(cls, model: LoadedModel) -> str | None:
        return _needs_suffix(model, "ForTokenClassification")

    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        merged = self.check_params(params)
        ignore = merged.get("ignore_labels", ["O"])
        if not isinstance(ignore, list) or not all(isinstance(x, str) for x in ignore):
            raise InvalidInput("'ignore_labels' must be a list of label names", param="ignore_labels")
        merged["ignore_labels"] = ignore
        items, single = self.items(inputs, merged)
        return items, merged, single

    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        import torch

        probs = torch.softmax(outputs.float(), dim=-1)
        scores, idx = probs.max(dim=-1)
        labels = self.model.config.id2label
        results = []
        for b, row in enumerate(batch["rows"]):
            n = len(row["input_ids"])
            tokens = [
                (labels[i], s, start, end)
                for i, s, (start, end), special in zip(
                    idx[b, :n].tolist(),
                    scores[b, :n].tolist(),
                    row["offset_mapping"],
                    row["special_tokens_mask"],
                    strict=True,
                )
                if not special and end > start
            ]
            results.append(self._group(tokens, row["text"], set(params["ignore_labels"])))
        return results

    @staticmethod
    def _group(
        tokens: list[tuple[str, float, int, int]], text: str, ignore: set[str]
    ) -> list[dict[str, Any]]:
        groups: list[list[tuple[str, float, int, int]]] = []
        for tok in tokens:
            bi, tag = _tag(tok[0])
            if groups and _tag(groups[-1][-1][0])[1] == tag and bi != "B":
                groups[-1].append(tok)
            else:
                groups.append([tok])
        out = []
        for g in groups:
            tag = _tag(g[0][0])[1]
            if tag in ignore or g[0][0] in ignore:
                continue
            start, end = g[0][2], g[-1][3]
            out.append(
                {
                    "entity_group": tag,
                    "score": sum(t[1] for t in g) / len(g),
                    "word": text[start:end],
                    "start": start,
                    "end": end,
                }
            )
        return out


class FillMask(_EncoderHandler):
    task = "fill-mask"
    allowed_params = frozenset({"top_k", "truncate"})

    @classmethod
    def unsupported_reason(cls, model: LoadedModel) -> str | None:
        reason = _needs_suffix(model, "ForMaskedLM")
        if reason is None and model.tokenizer.mask_token is None:
            return "the tokenizer has no mask token"
        return reason

    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        merged = self.check_params(params)
        merged["top_k"] = int_param(merged, "top_k", 5, 1, len(self.model.tokenizer))
        items, single = self.items(inputs, merged)
        mask, mask_id = self.model.tokenizer.mask_token, self.model.tokenizer.mask_token_id
        for i, it in enumerate(items):
            n = it.data["input_ids"].count(mask_id)
            if n != 1 or it.data["text"].count(mask) != 1:
                raise InvalidInput(
                    f"input {i} must contain the mask token {mask} exactly once, found "
                    f"{it.data['text'].count(mask)}",
                    param="inputs",
                    task=self.task,
                )
        return items, merged, single

    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        import torch

        tok = self.model.tokenizer
        ids = batch["inputs"]["input_ids"]
        pos = (ids == tok.mask_token_id).nonzero()  # one mask per row, checked in parse
        logits = outputs[pos[:, 0], pos[:, 1]].float()
        scores, top = torch.softmax(logits, dim=-1).topk(params["top_k"], dim=-1)
        results = []
        for b, (srow, trow) in enumerate(zip(scores.cpu().tolist(), top.cpu().tolist(), strict=True)):
            row = ids[b][batch["inputs"]["attention_mask"][b].bool()].cpu()
            mpos = int(pos[b, 1])
            cands = []
            for s, t in zip(srow, trow, strict=True):
                filled = row.clone()
                filled[mpos] = t
                cands.append(
                    {
                        "token_str": tok.decode([t]).strip(),
                        "token": t,
                        "score": s,
                        "sequence": tok.decode(filled.tolist(), skip_special_tokens=True),
                    }
                )
            results.append(cands)
        return results
