"""The task handler contract: parse (per request) / preprocess (CPU) / forward (device) / postprocess (CPU).

Split in stages so the scheduler overlaps CPU work with the device (infinity `transformer/abstract.py`).
Handlers hold a reference to the shared `LoadedModel`; they never copy weights.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

from hf_provider.errors import InvalidInput, TooManyItems
from hf_provider.runtime.model import LoadedModel
from hf_provider.types import Item, RowControl

_FAST_KWARGS = frozenset({"return_offsets_mapping", "return_special_tokens_mask"})


class BaseHandler(ABC):
    """The shared implementation of the `types.TaskHandler` protocol."""

    task: ClassVar[str]
    streaming: ClassVar[bool] = False
    generative: bool = False
    audio: ClassVar[bool] = False  # takes audio (runtime/tasks/speech.py); the only tasks of a speech model

    def __init__(self, model: LoadedModel, defaults: Mapping[str, Any] | None = None) -> None:
        self.model = model
        self.defaults: dict[str, Any] = dict(defaults or {})

    @classmethod
    @abstractmethod
    def unsupported_reason(cls, model: LoadedModel) -> str | None:
        """None when the model's architecture can serve this task, else a short reason."""

    @abstractmethod
    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        """Validate one request: returns its items, the resolved parameters (defaults merged, bounds checked)
        and whether the caller sent a single input (so the result is unwrapped). Raises InvalidInput."""

    def batch_key(self, params: Mapping[str, Any]) -> Hashable:
        """Requests whose keys are equal share a forward pass, so the key must cover every parameter that
        preprocess, forward or postprocess read for the whole batch. Default: all resolved parameters."""
        return freeze(params)

    # a shared trunk (runtime/tasks/trunk.py) -------------------------------------------------------------
    def trunk_key(self, params: Mapping[str, Any]) -> Hashable | None:
        """What this handler's forward begins with when it can run as trunk + head (`head`, `trunk_data`):
        requests whose trunk keys are equal may share a batch whatever their task and parameters (with the
        model's `batching.cross_task`). None: its forward is not split; `batch_key` alone says what shares."""
        return None

    def trunk_data(self, inputs: dict[str, Any], rows: list[Any]) -> Any:
        """What `preprocess` would give for these rows, from the mixed batch's padded `inputs` (its rows only)
        and the rows' own item data."""
        raise NotImplementedError(f"{self.task} does not run on a shared trunk")

    def head(self, data: Any, trunk_out: Any) -> Any:
        """What `forward` would give for `data`, from the trunk's output on its rows. Reads no parameter:
        parameters act in postprocess, so one head serves rows of any parameters."""
        raise NotImplementedError(f"{self.task} does not run on a shared trunk")

    def share_trunk(self, groups: list[tuple[Any, dict[str, Any], list[int]]]) -> Any:
        """The handler of a mixed batch: (handler, parameters, its rows) per group, all of one trunk key."""
        from hf_provider.runtime.tasks.trunk import SharedTrunk

        return SharedTrunk(groups)

    @abstractmethod
    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any:
        """Build device-ready tensors for a batch (padding, collation). CPU only."""

    @abstractmethod
    def forward(self, batch: Any, params: Mapping[str, Any], control: RowControl | None = None) -> Any:
        """Run the model on the batch. Called inside torch.inference_mode() on the forward thread. `control`
        streams deltas and tells which rows to stop early (generation); other tasks ignore it."""

    @abstractmethod
    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        """One JSON-serialisable result per item, in batch order."""

    # helpers shared by handlers ---------------------------------------------------------------------------
    def merged(self, params: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(self.defaults)
        out.update({k: v for k, v in params.items() if v is not None})
        return out

    @staticmethod
    def as_text_list(inputs: Any, max_items: int, param: str = "inputs") -> tuple[list[str], bool]:
        single = isinstance(inputs, str)
        texts = [inputs] if single else inputs
        if not isinstance(texts, list) or not texts:
            raise InvalidInput(
                f"'{param}' must be a non-empty string or a non-empty list of strings", param=param
            )
        if len(texts) > max_items:
            raise TooManyItems(
                f"'{param}' has {len(texts)} items; at most {max_items} are accepted per request", param=param
            )
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidInput(f"'{param}[{i}]' must be a string, got {type(t).__name__}", param=param)
            if not t.strip():
                raise InvalidInput(f"'{param}[{i}]' is empty", param=param)
        return texts, single

    def token_rows(self, inputs: Any, param: str = "inputs") -> tuple[list[dict[str, Any]], bool] | None:
        """Token-id inputs (a list of ids: one input; a list of id lists: several) as tokenized rows, checked
        against the vocabulary; None when `inputs` is not token ids (text goes through `as_text_list`)."""

        def ids(v: Any) -> bool:
            return isinstance(v, list) and bool(v) and all(type(t) is int for t in v)

        if ids(inputs):
            seqs, single = [inputs], True
        elif isinstance(inputs, list) and inputs and all(ids(x) for x in inputs):
            seqs, single = inputs, False
        else:
            return None
        if len(seqs) > self.max_items:
            raise TooManyItems(
                f"'{param}' has {len(seqs)} items; at most {self.max_items} are accepted per request",
                param=param,
            )
        vocab = vocab_size(self.model)
        for i, seq in enumerate(seqs):
            bad = next((t for t in seq if not 0 <= t < vocab), None)
            if bad is not None:
                where = param if single else f"{param}[{i}]"
                raise InvalidInput(
                    f"'{where}' holds token id {bad}, outside this model's vocabulary [0, {vocab})",
                    param=param,
                )
        return [{"input_ids": list(s), "attention_mask": [1] * len(s)} for s in seqs], single

    def check_rows(
        self, rows: list[dict[str, Any]], truncate: bool, limit: int | None = None, left: bool = False
    ) -> list[dict[str, Any]]:
        """Length-check token-id rows as `tokenize` checks text: too long is an error unless `truncate`, which
        keeps the start, or with `left` the end (what a causal LM continues from)."""
        limit = self.model.max_length if limit is None else limit
        return [
            {k: (v[len(v) - limit :] if left else v[:limit]) for k, v in r.items()}
            if self.check_length(len(r["input_ids"]), i, truncate, limit)
            else r
            for i, r in enumerate(rows)
        ]

    # validation and tokenization helpers -------------------------------------------------------------------
    #: parameter names this handler accepts; anything else is rejected by `check_params`
    allowed_params: ClassVar[frozenset[str]] = frozenset({"truncate"})

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults merged, unknown names rejected with the list of allowed ones."""
        merged = self.merged(params)
        unknown = sorted(k for k in merged if k not in self.allowed_params)
        if unknown:
            raise InvalidInput(
                f"unknown parameter(s) {', '.join(unknown)} for task {self.task!r}; allowed: "
                f"{', '.join(sorted(self.allowed_params))}",
                param=unknown[0],
                task=self.task,
            )
        truncate = merged.get("truncate", False)
        if not isinstance(truncate, bool):
            raise InvalidInput(
                f"'truncate' must be a boolean, got {type(truncate).__name__}", param="truncate"
            )
        return merged

    @property
    def max_items(self) -> int:
        return self.model.spec.batching.max_items_per_request

    def check_length(self, n: int, index: int, truncate: bool, limit: int | None = None) -> bool:
        """True when input `index` (n tokens) must be truncated; an error naming length and limit when the
        caller did not allow truncation."""
        limit = self.model.max_length if limit is None else limit
        if n <= limit:
            return False
        if not truncate:
            raise InvalidInput(
                f"input {index} is {n} tokens long; this model accepts at most {limit} tokens "
                f"(send truncate=true to cut it, or set truncate = true in the model's defaults for "
                f"{self.task!r})",
                param="inputs",
                task=self.task,
            )
        return True

    def tokenize(
        self, texts: list[str], truncate: bool, limit: int | None = None, left: bool = False, **kwargs: Any
    ) -> list[dict[str, Any]]:
        """One dict of token lists per text (one Rust call for the lot), length-checked.

        Truncation keeps the start (the tokenizer re-adds its special tokens), or with `left` the end,
        which is what a causal LM continues from."""
        limit = self.model.max_length if limit is None else limit
        fast = self.model.fast_encoder
        if fast is not None and set(kwargs) <= _FAST_KWARGS:
            rows = fast.encode(
                texts,
                offsets=bool(kwargs.get("return_offsets_mapping")),
                special_mask=bool(kwargs.get("return_special_tokens_mask")),
            )
        else:
            with self.model.tokenizer_lock:
                enc = self.model.tokenizer(texts, truncation=False, **kwargs)
            rows = [{k: list(v[i]) for k, v in enc.items()} for i in range(len(texts))]
        for i, text in enumerate(texts):
            if self.check_length(len(rows[i]["input_ids"]), i, truncate, limit):
                if left:
                    rows[i] = {k: v[len(v) - limit :] for k, v in rows[i].items()}
                else:
                    with self.model.tokenizer_lock:
                        one = self.model.tokenizer([text], truncation=True, max_length=limit, **kwargs)
                    rows[i] = {k: list(v[0]) for k, v in one.items()}
        return rows

    def pad(
        self,
        rows: list[Mapping[str, list[Any]]],
        keys: tuple[str, ...] = ("input_ids", "attention_mask"),
        side: str = "right",
    ) -> dict[str, Any]:
        """Pad token lists to one tensor per key on the model's device (pad id for input_ids, 0 elsewhere).

        Filled with numpy in one pass per key (a Python list per row made this the batch's costliest CPU step),
        and sent to a GPU from pinned memory without waiting: the copy queues behind the pass in progress
        instead of holding this thread (and the next batch) until the device is done."""
        import itertools

        import numpy as np
        import torch

        tok = self.model.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        lens = np.fromiter((len(r["input_ids"]) for r in rows), dtype=np.int64, count=len(rows))
        width = int(lens.max())
        cols = np.arange(width)[None, :]
        filled = cols >= (width - lens)[:, None] if side == "left" else cols < lens[:, None]
        device = self.model.device
        cuda = device.type == "cuda"
        out = {}
        for key in keys:
            if key not in rows[0] and key != "attention_mask":
                continue
            if key in rows[0]:
                a = np.full((len(rows), width), pad_id if key == "input_ids" else 0, dtype=np.int64)
                flat = itertools.chain.from_iterable(r[key] for r in rows)
                a[filled] = np.fromiter(flat, dtype=np.int64, count=int(lens.sum()))
            else:
                a = filled.astype(np.int64)
            t = torch.from_numpy(a)
            out[key] = t.pin_memory().to(device, non_blocking=True) if cuda else t.to(device)
        return out


def vocab_size(model: LoadedModel) -> int:
    """The ids a model takes: its embedding rows (the config's vocab_size), else the tokenizer's length."""
    return int(getattr(model.config, "vocab_size", None) or len(model.tokenizer))


def int_param(params: Mapping[str, Any], name: str, default: Any, lo: int, hi: int | None = None) -> Any:
    """An int within [lo, hi] (bools refused), or `default` when absent."""
    v = params.get(name, default)
    if v is None or v is default:
        return v
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidInput(f"'{name}' must be an integer, got {type(v).__name__}", param=name)
    if v < lo or (hi is not None and v > hi):
        upper = hi if hi is not None else "infinity"
        raise InvalidInput(f"'{name}' must be between {lo} and {upper}, got {v}", param=name)
    return v


def bool_param(params: Mapping[str, Any], name: str, default: bool) -> bool:
    v = params.get(name, default)
    if not isinstance(v, bool):
        raise InvalidInput(f"'{name}' must be a boolean, got {type(v).__name__}", param=name)
    return v


def freeze(value: Any) -> Hashable:
    """A hashable form of resolved parameters (dicts and lists become sorted tuples)."""
    if isinstance(value, Mapping):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value
