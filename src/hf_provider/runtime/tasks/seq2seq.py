"""text2text-generation, translation and summarization: `generate` on the shared encoder-decoder module.

The three differ only in the prompt's prefix (applied when a request is parsed) and the name of their output, so
their rows decode together: `batch_group` puts them in one batch key (with `batching.cross_task`, the default),
and each row carries its own output name through the batch (`_out`) and the continuous engine."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

from hf_provider.errors import InvalidInput
from hf_provider.runtime.model import LoadedModel
from hf_provider.runtime.tasks import genparams
from hf_provider.runtime.tasks.base import BaseHandler, vocab_size
from hf_provider.runtime.tasks.generation import finish_rows, run_generate
from hf_provider.types import Item, RowControl


def task_params(model: LoadedModel) -> dict[str, Any]:
    return dict(getattr(model.config, "task_specific_params", None) or {})


class Text2TextGeneration(BaseHandler):
    task = "text2text-generation"
    generative = True
    output_key: ClassVar[str] = "generated_text"
    batch_group: ClassVar[str] = "seq2seq"  # scheduling/batcher.batch_group: these tasks share batches
    #: whether a result carries finish_reason and token counts beside the text (as text-generation's do)
    details: ClassVar[bool] = True
    allowed_params = genparams.GEN_PARAMS | {"truncate"}

    @classmethod
    def unsupported_reason(cls, model: LoadedModel) -> str | None:
        if model.config.is_encoder_decoder:
            return None
        return f"{model.architecture} is not an encoder-decoder model"

    def prefix(self, params: Mapping[str, Any]) -> str:
        return ""

    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        merged = self.check_params(params)
        gp = genparams.resolve(merged, self.model.max_length, vocab_size(self.model))
        prefix = self.prefix(merged)
        given = self.token_rows(inputs)
        if given is not None:  # token ids are the encoder's input as they are: no task prefix is added
            rows, single = self.check_rows(given[0], merged.get("truncate", False)), given[1]
        else:
            texts, single = self.as_text_list(inputs, self.max_items)
            rows = self.tokenize([prefix + t for t in texts], merged.get("truncate", False))
        for r in rows:
            r["_out"] = self.output_key  # a batch of several tasks answers each row under its own name
        items = [
            Item(data=r, n_tokens=len(r["input_ids"]) + gp.max_new_tokens, new_tokens=gp.max_new_tokens)
            for r in rows
        ]
        return items, {**merged, "_gen": gp}, single

    def batch_key(self, params: Mapping[str, Any]) -> Hashable:
        return params["_gen"]

    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any:
        rows = [it.data for it in items]
        return {"inputs": self.pad(rows), "out": [r.get("_out", self.output_key) for r in rows]}

    def forward(self, batch: Any, params: Mapping[str, Any], control: RowControl | None = None) -> Any:
        return run_generate(self.model, batch["inputs"], params["_gen"], control)

    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        rows = finish_rows(self.model, batch["inputs"], outputs)
        return [self.result(r, out) for r, out in zip(rows, batch["out"], strict=True)]

    def result(self, row: Mapping[str, Any], out: str | None = None) -> dict[str, Any]:
        """A row's answer under its task's name (`out`: the row's own task in a mixed batch), with the finish
        reason and token counts where its task answers them (/v1/completions reads usage and "length" there)."""
        key = out or self.output_key
        if not _DETAILS.get(key, self.details):
            return {key: row["text"]}
        rest = {k: v for k, v in row.items() if k != "text"}
        return {key: row["text"], **rest}


class Summarization(Text2TextGeneration):
    task = "summarization"
    output_key = "summary_text"
    details = False

    def prefix(self, params: Mapping[str, Any]) -> str:
        return str(task_params(self.model).get("summarization", {}).get("prefix", ""))


class Translation(Text2TextGeneration):
    task = "translation"
    output_key = "translation_text"
    details = False
    allowed_params = Text2TextGeneration.allowed_params | {"source_lang", "target_lang"}

    def prefix(self, params: Mapping[str, Any]) -> str:
        langs = []
        for name, default in (("source_lang", "en"), ("target_lang", "de")):
            v = params.get(name, default)
            if not isinstance(v, str) or not v.strip():
                raise InvalidInput(f"'{name}' must be a language code such as 'en'", param=name)
            langs.append(v.strip())
        key = f"translation_{langs[0]}_to_{langs[1]}"
        tsp = task_params(self.model)
        pairs = sorted(
            k.removeprefix("translation_").replace("_to_", "->") for k in tsp if k.startswith("translation_")
        )
        if key in tsp:
            return str(tsp[key].get("prefix", ""))
        if pairs:  # the checkpoint lists its language pairs and this is not one of them
            raise InvalidInput(
                f"model {self.model.name!r} translates {', '.join(pairs)}; not {langs[0]}->{langs[1]}",
                param="target_lang",
                task=self.task,
            )
        return ""  # a single-pair model (such as Marian) needs no prefix


#: Whether a task's answer carries the finish reason and token counts, by its output name (a mixed batch's rows
#: each answer as their own task does).
_DETAILS = {h.output_key: h.details for h in (Text2TextGeneration, Summarization, Translation)}
