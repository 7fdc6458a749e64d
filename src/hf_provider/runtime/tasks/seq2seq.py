"""text2text-generation, translation and summarization: `generate` on the shared encoder-decoder module."""

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
        items = [
            Item(data=r, n_tokens=len(r["input_ids"]) + gp.max_new_tokens, new_tokens=gp.max_new_tokens)
            for r in rows
        ]
        return items, {**merged, "_gen": gp}, single

    def batch_key(self, params: Mapping[str, Any]) -> Hashable:
        return params["_gen"]

    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any:
        return self.pad([it.data for it in items])

    def forward(self, batch: Any, params: Mapping[str, Any], control: RowControl | None = None) -> Any:
        return run_generate(self.model, batch, params["_gen"], control)

    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        rows = finish_rows(self.model, batch, outputs)
        if not self.details:
            return [{self.output_key: r["text"]} for r in rows]
        # the finish reason and token counts too: /v1/completions answers usage and "length" from them
        return [{self.output_key: r.pop("text"), **r} for r in rows]


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
