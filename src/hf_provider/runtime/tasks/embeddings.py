"""embeddings: the checkpoint's own sentence-transformers modules when present, else mean pooling."""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping
from typing import Any

from hf_provider.errors import InvalidInput
from hf_provider.runtime.graphs import GraphRunner
from hf_provider.runtime.model import LoadedModel
from hf_provider.runtime.tasks.base import BaseHandler, bool_param, int_param
from hf_provider.runtime.tasks.trunk import TRUNK_KEY
from hf_provider.types import Item, RowControl


class Embeddings(BaseHandler):
    task = "embeddings"
    allowed_params = frozenset({"normalize", "dimensions", "truncate"})

    @classmethod
    def unsupported_reason(cls, model: LoadedModel) -> str | None:
        return None if model.tokenizer is not None else f"{model.architecture} has no tokenizer in its files"

    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        merged = self.check_params(params)
        merged["normalize"] = bool_param(merged, "normalize", True)
        merged["dimensions"] = int_param(merged, "dimensions", None, 1, self.hidden_size)
        given = self.token_rows(inputs)
        if given is not None:
            if self.model.sentence_model is not None and not self.st_features_from_ids:
                raise InvalidInput(
                    f"model {self.model.name!r} tokenizes its inputs with its own modules (prompts, "
                    "lower-casing...): send text, not token ids",
                    param="inputs",
                    task=self.task,
                )
            rows, single = self.check_rows(given[0], merged.get("truncate", False)), given[1]
            return [Item(data=r, n_tokens=len(r["input_ids"])) for r in rows], merged, single
        texts, single = self.as_text_list(inputs, self.max_items)
        rows = self.tokenize(texts, merged.get("truncate", False))
        if self.model.sentence_model is not None and not self.st_features_from_ids:
            # the checkpoint tokenizes again in preprocess (same tokenizer, its own settings);
            # here we only measure
            return (
                [
                    Item(data={"text": t}, n_tokens=len(r["input_ids"]))
                    for t, r in zip(texts, rows, strict=True)
                ],
                merged,
                single,
            )
        return [Item(data=r, n_tokens=len(r["input_ids"])) for r in rows], merged, single

    @functools.cached_property
    def st_features_from_ids(self) -> bool:
        """True when the checkpoint's modules are a plain Transformer + Pooling (+ Normalize) with no prompts and
        no lower-casing: then the ids from `parse` are exactly what its own preprocess would produce, and the batch
        is padded from them instead of being tokenized a second time."""
        st = self.model.sentence_model
        if st is None or self.model.fast_encoder is None:
            return False
        kinds = [type(m).__name__ for m in st]
        plain = kinds[:2] == ["Transformer", "Pooling"] and all(k == "Normalize" for k in kinds[2:])
        return (
            plain
            and not getattr(st[0], "do_lower_case", False)
            and not getattr(st, "default_prompt_name", None)
            and not any(getattr(st, "prompts", {}).values())
        )

    @functools.cached_property
    def hidden_size(self) -> int:
        st = self.model.sentence_model
        if st is not None:
            get = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
            dim = get()
            if dim:
                return int(dim)
        cfg = self.model.config
        return int(getattr(cfg, "hidden_size", None) or getattr(cfg, "d_model", None) or cfg.n_embd)

    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any:
        st = self.model.sentence_model
        if st is None or self.st_features_from_ids:
            batch = self.pad(
                [it.data for it in items], keys=("input_ids", "attention_mask", "token_type_ids")
            )
            if st is not None:
                batch["modality"] = "text"
            return batch
        texts = [it.data["text"] for it in items]
        # sentence-transformers 6 renamed tokenize() to preprocess(); the old name only warns
        prep = getattr(st, "preprocess", None) or st.tokenize
        with self.model.tokenizer_lock:
            features = prep(texts)
        return {k: (v.to(self.model.device) if hasattr(v, "to") else v) for k, v in features.items()}

    @functools.cached_property
    def graphs(self) -> GraphRunner | None:
        """CUDA graphs for this model's forward pass (runtime/graphs.py), when it runs on CUDA from padded ids."""
        m = self.model
        if m.device.type != "cuda" or not m.spec.cuda_graphs:
            return None
        if m.sentence_model is not None and not self.st_features_from_ids:
            return None  # the checkpoint's own preprocess makes the batch: its inputs are not ours to pad
        extra = {"modality": "text"} if m.sentence_model is not None else {}
        tok = m.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        return GraphRunner(
            lambda inputs: self._forward({**inputs, **extra}),
            {"input_ids": pad_id},
            max_batch=m.spec.batching.max_batch_size,
            max_length=m.max_length,
            capture=True,
        )

    def forward(self, batch: Any, params: Mapping[str, Any], control: RowControl | None = None) -> Any:
        runner = self.graphs
        if runner is not None and batch["input_ids"].device.type == "cuda":  # not after a fallback to the CPU
            out = runner(batch)
            if out is not None:
                return out
        return self._forward(batch)

    def _forward(self, batch: Any) -> Any:
        st = self.model.sentence_model
        backend = self.model.backend  # an exported graph in place of the encoder (optimize/backends.py)
        if st is not None and backend is None:
            return st.forward(dict(batch))["sentence_embedding"]
        module = self.model.module
        encoder = module.get_encoder() if self.model.config.is_encoder_decoder else module.base_model
        encoder = backend or encoder
        kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if "token_type_ids" in batch and not self.model.config.is_encoder_decoder:
            kwargs["token_type_ids"] = batch["token_type_ids"]
        return self._pool(batch, encoder(**kwargs).last_hidden_state)

    def _pool(self, batch: Any, hidden: Any) -> Any:
        if self.model.sentence_model is not None:  # the checkpoint's own pooling and normalization
            return st_tail(self.model, batch, hidden)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

    # a shared trunk (runtime/tasks/trunk.py): the base model, then this handler's pooling
    def trunk_key(self, params: Mapping[str, Any]) -> Hashable | None:
        # an exported graph is not the base model's computation (and serves this one task): batches of its own
        return None if self.model.backend is not None else self._trunk

    @functools.cached_property
    def _trunk(self) -> str | None:
        m = self.model
        if m.config.is_encoder_decoder or self.graphs is not None:
            return None  # a T5 encoder has no other encoder head; CUDA graphs replay this forward whole
        if m.sentence_model is not None and not self.st_features_from_ids:
            return None  # the checkpoint tokenizes its own way: its rows are not the padded ids others share
        return TRUNK_KEY

    def trunk_data(self, inputs: dict[str, Any], rows: list[Any]) -> Any:
        return {**inputs, "modality": "text"} if self.model.sentence_model is not None else inputs

    def head(self, data: Any, trunk_out: Any) -> Any:
        return self._pool(data, trunk_out.last_hidden_state)

    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        import torch

        vecs = outputs.float()
        dims = params.get("dimensions")
        if dims is not None:
            vecs = vecs[:, :dims]
        if params.get("normalize", True):
            vecs = torch.nn.functional.normalize(vecs, p=2, dim=1)
        # One float32 array per input, views of one host array: a Python list of floats per vector cost
        # milliseconds per batch under the GIL; orjson writes numpy arrays natively (OPT_SERIALIZE_NUMPY).
        return list(vecs.contiguous().cpu().numpy())


def st_tail(model: Any, batch: dict[str, Any], hidden: Any) -> Any:
    """The sentence-transformers modules after the transformer (pooling, dense, normalize) on `hidden`, so a
    backend computing token embeddings yields exactly what `SentenceTransformer.forward` would."""
    st = model.sentence_model
    features = dict(batch)
    features[getattr(st[0], "module_output_name", "token_embeddings")] = hidden
    for module in list(st)[1:]:
        features = module(features)
    return features["sentence_embedding"]
