"""Generation parameters shared by text-generation, the seq2seq tasks and generative question answering.

Validated in one place so every task accepts the same names, bounds and types. `GenParams` is frozen and
hashable: handlers return it from `batch_key`, so only requests with the same decoding settings share a
forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hf_provider.errors import InvalidInput
from hf_provider.runtime.tasks.base import bool_param, int_param

GEN_PARAMS = frozenset(
    {
        "max_new_tokens",
        "temperature",
        "top_p",
        "top_k",
        "do_sample",
        "stop",
        "seed",
        "logprobs",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "prompt_logprobs",
    }
)
MAX_NEW_TOKENS = 4096
MAX_STOPS = 4
MAX_LOGPROBS = 20


@dataclass(frozen=True, slots=True)
class GenParams:
    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float | None = None  # only set when sampling
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    #: None: no logprobs; k >= 0: each generated token's logprob and the k most likely tokens' (rowlogits.py)
    logprobs: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias), sorted
    prompt_logprobs: bool = False  # the prompt tokens' logprobs too (completions' echo with logprobs)

    @property
    def processes(self) -> bool:
        """Whether the logits are changed before sampling (penalties, bias): a per-row processor runs."""
        return bool(self.presence_penalty or self.frequency_penalty or self.logit_bias)

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `generate`; explicit so a checkpoint's generation_config cannot turn on
        sampling or beam search behind the caller's back."""
        kw: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "num_beams": 1,
        }
        if self.do_sample:
            kw["temperature"] = self.temperature
            kw["top_p"] = 1.0 if self.top_p is None else self.top_p
            kw["top_k"] = 0 if self.top_k is None else self.top_k
        return kw


def _float(params: Mapping[str, Any], name: str) -> float | None:
    v = params.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise InvalidInput(f"'{name}' must be a number, got {type(v).__name__}", param=name)
    return float(v)


def resolve(params: Mapping[str, Any], max_length: int, vocab: int | None = None) -> GenParams:
    """Validate the generation subset of `params` (other names are the caller's business); `vocab` bounds the
    token ids of `logit_bias`."""
    limit = min(MAX_NEW_TOKENS, max_length)
    max_new = int_param(params, "max_new_tokens", 64, 1, limit)
    if max_new > limit:  # the default itself can exceed a tiny model's context
        max_new = limit

    temperature = _float(params, "temperature")
    if temperature is not None and not 0 <= temperature <= 5:
        raise InvalidInput(
            f"'temperature' must be between 0 and 5 (0 means greedy), got {temperature}", param="temperature"
        )
    top_p = _float(params, "top_p")
    if top_p is not None and not 0 < top_p <= 1:
        raise InvalidInput(f"'top_p' must be greater than 0 and at most 1, got {top_p}", param="top_p")
    top_k = int_param(params, "top_k", None, 0)
    seed = int_param(params, "seed", None, -(2**63), 2**63 - 1)

    if "do_sample" in params and params["do_sample"] is not None:
        do_sample = bool_param(params, "do_sample", False)
    else:
        do_sample = temperature is not None and temperature > 0
    if temperature == 0:
        do_sample = False  # 0 means greedy, whatever do_sample says
    if not do_sample:
        temperature = top_p = top_k = None
    elif temperature is None:
        temperature = 1.0

    stop = params.get("stop")
    stops: tuple[str, ...] = ()
    if stop is not None:
        items = [stop] if isinstance(stop, str) else stop
        if not isinstance(items, list | tuple) or not all(isinstance(s, str) for s in items):
            raise InvalidInput("'stop' must be a string or a list of strings", param="stop")
        if len(items) > MAX_STOPS:
            raise InvalidInput(
                f"'stop' has {len(items)} strings; at most {MAX_STOPS} are accepted", param="stop"
            )
        if any(not s for s in items):
            raise InvalidInput("'stop' strings must not be empty", param="stop")
        stops = tuple(dict.fromkeys(items))
    penalties = {}
    for name in ("presence_penalty", "frequency_penalty"):
        v = _float(params, name)
        if v is not None and not -2 <= v <= 2:
            raise InvalidInput(f"'{name}' must be between -2 and 2, got {v}", param=name)
        penalties[name] = v or 0.0
    return GenParams(
        max_new_tokens=max_new,
        logprobs=int_param(params, "logprobs", None, 0, MAX_LOGPROBS),
        prompt_logprobs=bool_param(params, "prompt_logprobs", False),
        logit_bias=_logit_bias(params.get("logit_bias"), vocab),
        **penalties,
        do_sample=do_sample,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        stop=stops,
        seed=seed,
    )


def _logit_bias(value: Any, vocab: int | None) -> tuple[tuple[int, float], ...]:
    """OpenAI's logit_bias: {"token id": bias in [-100, 100]}, as sorted (id, bias) pairs."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise InvalidInput("'logit_bias' must be an object of token id -> bias", param="logit_bias")
    out: dict[int, float] = {}
    for key, bias in value.items():
        try:
            tid = int(key)
        except (TypeError, ValueError):
            raise InvalidInput(f"'logit_bias' key {key!r} is not a token id", param="logit_bias") from None
        if tid < 0 or (vocab is not None and tid >= vocab):
            raise InvalidInput(
                f"'logit_bias' token id {tid} is outside this model's vocabulary [0, {vocab})",
                param="logit_bias",
            )
        if isinstance(bias, bool) or not isinstance(bias, int | float) or not -100 <= bias <= 100:
            raise InvalidInput(
                f"'logit_bias' values must be numbers in [-100, 100], got {bias!r}", param="logit_bias"
            )
        out[tid] = float(bias)
    return tuple(sorted(out.items()))
