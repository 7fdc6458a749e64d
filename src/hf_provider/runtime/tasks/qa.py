"""question-answering: span extraction on *ForQuestionAnswering heads, generation on encoder-decoders."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from hf_provider.errors import InvalidInput, TooManyItems
from hf_provider.runtime.model import LoadedModel
from hf_provider.runtime.tasks import genparams
from hf_provider.runtime.tasks.base import BaseHandler, int_param
from hf_provider.runtime.tasks.generation import finish_rows, run_generate
from hf_provider.types import Item, RowControl

EXTRACTIVE_PARAMS = frozenset({"max_answer_len", "truncate"})


def _pairs(inputs: Any, max_items: int) -> tuple[list[tuple[str, str]], bool]:
    single = isinstance(inputs, dict)
    rows = [inputs] if single else inputs
    if not isinstance(rows, list) or not rows:
        raise InvalidInput(
            '\'inputs\' must be an object {"question": ..., "context": ...} or a non-empty list of them',
            param="inputs",
        )
    if len(rows) > max_items:
        raise TooManyItems(
            f"'inputs' has {len(rows)} items; at most {max_items} are accepted per request", param="inputs"
        )
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise InvalidInput(
                f"'inputs[{i}]' must be an object with 'question' and 'context'", param="inputs"
            )
        extra = sorted(set(r) - {"question", "context"})
        if extra:
            raise InvalidInput(
                f"'inputs[{i}]' has unknown key(s) {', '.join(extra)}; allowed: question, context",
                param="inputs",
            )
        for key in ("question", "context"):
            v = r.get(key)
            if not isinstance(v, str) or not v.strip():
                raise InvalidInput(f"'inputs[{i}].{key}' must be a non-empty string", param="inputs")
        out.append((r["question"], r["context"]))
    return out, single


class QuestionAnswering(BaseHandler):
    task = "question-answering"

    def __init__(self, model: LoadedModel, defaults: Mapping[str, Any] | None = None) -> None:
        super().__init__(model, defaults)
        self.generative = bool(model.config.is_encoder_decoder)
        self.allowed_params = (genparams.GEN_PARAMS | {"truncate"}) if self.generative else EXTRACTIVE_PARAMS

    @classmethod
    def unsupported_reason(cls, model: LoadedModel) -> str | None:
        if model.config.is_encoder_decoder or model.architecture.endswith("ForQuestionAnswering"):
            return None
        return (
            f"{model.architecture} is neither an encoder-decoder model nor has a *ForQuestionAnswering head"
        )

    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        merged = self.check_params(params)
        pairs, single = _pairs(inputs, self.max_items)
        truncate = merged.get("truncate", False)
        if self.generative:
            gp = genparams.resolve(merged, self.model.max_length)
            rows = self.tokenize([f"question: {q} context: {c}" for q, c in pairs], truncate)
            for row, (_, c) in zip(rows, pairs, strict=True):
                row["context"] = c
            return (
                [
                    Item(
                        data=r, n_tokens=len(r["input_ids"]) + gp.max_new_tokens, new_tokens=gp.max_new_tokens
                    )
                    for r in rows
                ],
                {**merged, "_gen": gp},
                single,
            )
        merged["max_answer_len"] = int_param(merged, "max_answer_len", 15, 1, self.model.max_length)
        tok = self.model.tokenizer
        enc = tok([q for q, _ in pairs], [c for _, c in pairs], truncation=False, return_offsets_mapping=True)
        items = []
        for i, (q, c) in enumerate(pairs):
            row = {k: list(v[i]) for k, v in enc.items()}
            if self.check_length(len(row["input_ids"]), i, truncate):
                one = tok(
                    [q],
                    [c],
                    truncation="only_second",
                    max_length=self.model.max_length,
                    return_offsets_mapping=True,
                )
                row = {k: list(v[0]) for k, v in one.items()}
                seq_ids = one.sequence_ids(0)
            else:
                seq_ids = enc.sequence_ids(i)
            row["context_mask"] = [s == 1 for s in seq_ids]
            row["context"] = c
            items.append(Item(data=row, n_tokens=len(row["input_ids"])))
        return items, merged, single

    def batch_key(self, params: Mapping[str, Any]) -> Hashable:
        # Generative QA reads only the decoding settings; extractive QA reads max_answer_len in postprocess.
        return params["_gen"] if self.generative else super().batch_key(params)

    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any:
        rows = [it.data for it in items]
        return {
            "inputs": self.pad(rows, keys=("input_ids", "attention_mask", "token_type_ids")),
            "rows": rows,
        }

    def forward(self, batch: Any, params: Mapping[str, Any], control: RowControl | None = None) -> Any:
        if self.generative:
            return run_generate(self.model, batch["inputs"], params["_gen"], control)
        out = (self.model.backend or self.model.module)(**batch["inputs"])
        return out.start_logits, out.end_logits

    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        if self.generative:
            results = []
            for r, row in zip(finish_rows(self.model, batch["inputs"], outputs), batch["rows"], strict=True):
                answer = r["text"].strip()
                start = row["context"].find(answer) if answer else -1
                results.append(
                    {
                        "answer": answer,
                        "score": None,
                        "start": start if start >= 0 else None,
                        "end": start + len(answer) if start >= 0 else None,
                    }
                )
            return results
        return [
            self._span(row, s, e, params["max_answer_len"])
            for row, s, e in zip(
                batch["rows"], outputs[0].float().cpu(), outputs[1].float().cpu(), strict=True
            )
        ]

    @staticmethod
    def _span(row: Mapping[str, Any], start_logits: Any, end_logits: Any, max_len: int) -> dict[str, Any]:
        """Best start <= end < start + max_len among context tokens; score = p(start) * p(end)."""
        import torch

        n = len(row["input_ids"])
        ctx = torch.tensor(row["context_mask"])
        s = torch.softmax(start_logits[:n].masked_fill(~ctx, float("-inf")), dim=0)
        e = torch.softmax(end_logits[:n].masked_fill(~ctx, float("-inf")), dim=0)
        scores = torch.triu(torch.tril(s[:, None] * e[None, :], diagonal=max_len - 1))
        best = int(scores.argmax())
        i, j = divmod(best, n)
        start, end = row["offset_mapping"][i][0], row["offset_mapping"][j][1]
        return {"answer": row["context"][start:end], "score": float(scores[i, j]), "start": start, "end": end}
