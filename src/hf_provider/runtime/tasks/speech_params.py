"""Parameters of automatic-speech-recognition, validated in one place against the model's generation config.

`SpeechParams` is frozen and hashable: the handler's batch key, so only requests with the same task, language,
prompt and decoding settings share a `generate` call (Whisper takes one task, language and prompt per call).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hf_provider.errors import InvalidInput
from hf_provider.runtime.model import LoadedModel
from hf_provider.runtime.tasks.base import bool_param, int_param

TASKS = ("transcribe", "translate")
MAX_PROMPT_CHARS = 2000


@dataclass(frozen=True, slots=True)
class SpeechParams:
    task: str | None = None  # transcribe | translate; None: the checkpoint's default (transcription)
    language: str | None = None  # a code ("fr"); None: detected per audio
    prompt: str | None = None
    prompt_ids: tuple[int, ...] = ()  # <|startofprev|> and the prompt's tokens, checked in parse
    temperature: float = 0.0
    max_new_tokens: int = 128
    return_timestamps: bool | str = False  # True: segments; "word": words (and segments) from one generate
    return_language: bool = False
    chunk_length_s: float = 30.0
    stride_length_s: tuple[float, float] = (5.0, 5.0)
    seed: int | None = None

    @property
    def language_name(self) -> str | None:
        from transformers.models.whisper.tokenization_whisper import LANGUAGES

        return LANGUAGES.get(self.language) if self.language else None

    def generate_kwargs(self, model: LoadedModel) -> dict[str, Any]:
        """Explicit, so a checkpoint's generation_config cannot switch on beams or sampling behind the caller."""
        kw: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "num_beams": 1,
            "do_sample": self.temperature > 0,
        }
        if self.temperature > 0:
            kw["temperature"] = self.temperature
        # only what the caller set: generate's defaults are the checkpoint's (the pipeline's too)
        if self.task is not None and _multilingual(model):
            kw["task"] = self.task
        if self.language is not None and _multilingual(model):
            kw["language"] = self.language
        if self.return_timestamps:
            kw["return_timestamps"] = True
        if self.return_timestamps == "word":  # cross-attention alignment (the config's alignment_heads)
            kw["return_token_timestamps"] = True
            kw["return_segments"] = True
        if self.return_language:
            # the language token is in the full sequences of the segments; generate strips it from `sequences`
            kw["return_segments"] = True
        if self.prompt_ids:
            import torch

            kw["prompt_ids"] = torch.tensor(self.prompt_ids, device=model.device)
        return kw


def _multilingual(model: LoadedModel) -> bool:
    gen = getattr(model.module, "generation_config", None)
    return bool(getattr(gen, "is_multilingual", False)) and hasattr(gen, "lang_to_id")


def languages(model: LoadedModel) -> list[str]:
    """The language codes the model's generation config knows ("en" alone for an English-only model)."""
    gen = getattr(model.module, "generation_config", None)
    if not _multilingual(model):
        return ["en"]
    return [t.strip("<|>") for t in getattr(gen, "lang_to_id", {})]


def _language(value: Any, model: LoadedModel) -> str | None:
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput(
            f"'language' must be a string such as 'en', got {type(value).__name__}", param="language"
        )
    v = value.strip().lower()
    code = TO_LANGUAGE_CODE.get(v, v)  # "french" -> "fr"
    known = languages(model)
    if code not in known:
        shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
        raise InvalidInput(
            f"'language' {value!r} is not a language this model knows; use an ISO-639-1 code: {shown}",
            param="language",
        )
    return code


def _seconds(params: Mapping[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    v = params.get(name, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise InvalidInput(
            f"'{name}' must be a number of seconds between {lo} and {hi}, got {v!r}", param=name
        )
    return float(v)


def _prompt_ids(prompt: str | None, model: LoadedModel) -> tuple[int, ...]:
    if not prompt:
        return ()
    try:
        with model.tokenizer_lock:  # runtime/model.py: every encoding call holds it
            ids = model.tokenizer.get_prompt_ids(prompt, return_tensors="np")
    except ValueError as e:  # a control token (<|en|>, <|0.00|>...) in the text
        raise InvalidInput(f"'prompt' must be plain text: {e}", param="prompt") from None
    return tuple(int(i) for i in ids)


def _timestamps(value: Any, model: LoadedModel) -> bool | str:
    if value == "word":
        if not getattr(getattr(model.module, "generation_config", None), "alignment_heads", None):
            raise InvalidInput(
                f"model {model.name!r} has no alignment_heads in its generation config: no word timestamps",
                param="return_timestamps",
            )
        return "word"
    if not isinstance(value, bool):
        raise InvalidInput(
            f"'return_timestamps' must be true, false or \"word\", got {value!r}", param="return_timestamps"
        )
    return value


def resolve(params: Mapping[str, Any], model: LoadedModel) -> SpeechParams:
    # not "task": that name is the provider's (types.RESERVED_PARAMS)
    task = params.get("speech_task")
    if task is not None and task not in TASKS:
        raise InvalidInput(
            f"'speech_task' must be one of {', '.join(TASKS)}, got {task!r}", param="speech_task"
        )
    if task == "translate" and not _multilingual(model):
        raise InvalidInput(
            f"model {model.name!r} is English-only: it transcribes, it cannot translate", param="speech_task"
        )
    temperature = params.get("temperature", 0.0)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 1:
        raise InvalidInput(f"'temperature' must be between 0 and 1, got {temperature!r}", param="temperature")
    prompt = params.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise InvalidInput("'prompt' must be a string", param="prompt")
    if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidInput(f"'prompt' is longer than {MAX_PROMPT_CHARS} characters", param="prompt")
    # Whisper's decoder holds max_target_positions tokens, the start tokens (and a prompt) included
    limit = int(getattr(model.config, "max_target_positions", 448)) // 2
    max_new = int_param(params, "max_new_tokens", min(128, limit), 1, limit)
    chunk = _seconds(params, "chunk_length_s", 30.0, 1.0, 30.0)
    stride = _seconds(params, "stride_length_s", chunk / 6, 0.0, chunk / 2)
    if 2 * stride >= chunk:
        raise InvalidInput(
            "'stride_length_s' must be less than half of 'chunk_length_s'", param="stride_length_s"
        )
    prompt = (prompt.strip() or None) if prompt else None
    return SpeechParams(
        task=task,
        language=_language(params.get("language"), model),
        prompt=prompt,
        prompt_ids=_prompt_ids(prompt, model),
        temperature=float(temperature),
        max_new_tokens=max_new,
        return_timestamps=_timestamps(params.get("return_timestamps", False), model),
        return_language=bool_param(params, "return_language", False),
        chunk_length_s=chunk,
        stride_length_s=(stride, stride),
        seed=int_param(params, "seed", None, -(2**63), 2**63 - 1),
    )
