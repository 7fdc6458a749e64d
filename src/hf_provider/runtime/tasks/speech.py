"""automatic-speech-recognition on Whisper: transcription, translation and language detection from one weight set.

The three are one handler on the shared module: `task` (transcribe | translate) and `language` are parameters of
`generate`, so serving both costs no second copy of anything. Audio longer than one 30 s window is cut into
windows that overlap by a stride on each side, every window a row of the batch (windows of several requests
share one `generate`), and the rows of one audio are merged back by Whisper's tokenizer (`_decode_asr`, the
longest common sequence across each overlap): the same chunking and merge as transformers'
AutomaticSpeechRecognitionPipeline with `chunk_length_s=30`, so results are the pipeline's.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hf_provider.errors import InvalidInput
from hf_provider.media import audio
from hf_provider.runtime.model import LoadedModel
from hf_provider.runtime.tasks.base import BaseHandler
from hf_provider.runtime.tasks.generation import BatchStreamer, _RowStop, eos_ids
from hf_provider.runtime.tasks.speech_params import SpeechParams, resolve
from hf_provider.types import Item, RowControl


@dataclass(slots=True)
class Chunked:
    """One audio: its samples at the feature extractor's rate and its windows (start, end, stride_l, stride_r)."""

    samples: np.ndarray
    windows: list[tuple[int, int, int, int]]


def windows(n: int, chunk: int, left: int, right: int) -> list[tuple[int, int, int, int]]:
    """The pipeline's `chunk_iter` arithmetic: windows of `chunk` samples stepping by chunk - left - right; the
    first has no left stride, the last no right stride; a window no longer than its left stride is dropped."""
    out = []
    step = chunk - left - right
    for start in range(0, n, step):
        end = start + chunk
        last = end >= n
        s_left, s_right = (0 if start == 0 else left), (0 if last else right)
        if min(end, n) - start > s_left:
            out.append((start, min(end, n), s_left, s_right))
        if last:
            break
    return out


class SpeechRecognition(BaseHandler):
    task = "automatic-speech-recognition"
    streaming = True
    generative = True
    audio = True
    allowed_params = frozenset(
        {
            "speech_task",
            "language",
            "prompt",
            "temperature",
            "max_new_tokens",
            "return_timestamps",
            "return_language",
            "chunk_length_s",
            "stride_length_s",
            "seed",
        }
    )

    @classmethod
    def unsupported_reason(cls, model: LoadedModel) -> str | None:
        if model.feature_extractor is None:
            return f"{model.architecture} is not a speech model"
        if getattr(model.config, "model_type", None) != "whisper":
            return f"{model.architecture} is a speech model, but only Whisper generation is served"
        return None

    @property
    def rate(self) -> int:
        return int(self.model.feature_extractor.sampling_rate)

    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        merged = self.check_params(params)
        sp = resolve(merged, self.model)
        single = not isinstance(inputs, list)
        values = [inputs] if single else inputs
        if not values:
            raise InvalidInput("'inputs' must be one audio or a non-empty list of audios", param="inputs")
        if len(values) > self.max_items:
            raise InvalidInput(
                f"'inputs' has {len(values)} audios; at most {self.max_items} are accepted per request",
                param="inputs",
            )
        chunk = round(sp.chunk_length_s * self.rate)
        left, right = (round(s * self.rate) for s in sp.stride_length_s)
        items = []
        for i, value in enumerate(values):
            samples = self.samples(value, "inputs" if single else f"inputs[{i}]")
            w = windows(samples.shape[0], chunk, left, right)
            # cost for batching: each window is a row that generates up to max_new_tokens
            items.append(
                Item(
                    data=Chunked(samples, w),
                    n_tokens=len(w) * (sp.max_new_tokens + 4),
                    new_tokens=len(w) * sp.max_new_tokens,
                )
            )
        return items, {**merged, "_speech": sp}, single

    def samples(self, value: Any, param: str) -> np.ndarray:
        """Mono float32 samples at the model's rate from encoded bytes, base64 (a data URI or plain), or
        {"raw" | "array": samples, "sampling_rate": int} (the pipeline's form)."""
        if isinstance(value, bytes | bytearray | memoryview):
            return audio.decode(bytes(value), self.rate, param=param)
        if isinstance(value, str):
            payload = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
            try:
                raw = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput(
                    f"'{param}' must be base64-encoded audio (or a data: URI); local paths and URLs are not read",
                    param=param,
                ) from None
            return audio.decode(raw, self.rate, param=param)
        if isinstance(value, Mapping):
            arr = value.get("raw", value.get("array"))
            rate = value.get("sampling_rate")
            if arr is None or isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
                raise InvalidInput(
                    f"'{param}' must hold 'raw' (samples) and 'sampling_rate' (a positive integer)",
                    param=param,
                )
            try:
                a = np.asarray(arr, dtype=np.float32)
            except (TypeError, ValueError):
                raise InvalidInput(f"'{param}.raw' must be a list of numbers", param=param) from None
            if a.ndim == 2:  # (channels, samples) -> mono, as the pipeline does
                a = a.mean(axis=0)
            if a.ndim != 1 or not np.isfinite(a).all():
                raise InvalidInput(
                    f"'{param}.raw' must be finite mono or (channels, samples) audio", param=param
                )
            a = audio.resample(a, rate, self.rate, param=param)
            if a.shape[0] < audio.MIN_SECONDS * self.rate:
                raise audio.AudioTooShort(
                    f"'{param}' holds less than {audio.MIN_SECONDS} s of audio", param=param
                )
            return a
        raise InvalidInput(
            f"'{param}' must be audio: file bytes, base64 text or {{'raw', 'sampling_rate'}}, "
            f"got {type(value).__name__}",
            param=param,
        )

    def batch_key(self, params: Mapping[str, Any]) -> Hashable:
        return params["_speech"]

    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any:

        fe = self.model.feature_extractor
        chunks, owner, strides = [], [], []
        for i, it in enumerate(items):
            c: Chunked = it.data
            for start, end, left, right in c.windows:
                chunks.append(c.samples[start:end])
                owner.append(i)
                strides.append(((end - start) / self.rate, left / self.rate, right / self.rate))
        feats = fe(chunks, sampling_rate=self.rate, return_tensors="pt", return_attention_mask=True)
        dtype = self.model.dtype
        return {
            "input_features": feats["input_features"].to(self.model.device, dtype=dtype),
            "attention_mask": feats["attention_mask"].to(self.model.device),
            "owner": owner,
            "strides": strides,
            "single_window": [len(it.data.windows) == 1 for it in items],
            "seconds": [it.data.samples.shape[0] / self.rate for it in items],
        }

    def forward(self, batch: Any, params: Mapping[str, Any], control: RowControl | None = None) -> Any:
        """`generate` over the batch's windows, at most max_batch_size windows a call: a long audio is many
        windows, and one call over all of them would hold every window's encoder activations at once."""
        import torch

        sp: SpeechParams = params["_speech"]
        if sp.seed is not None:
            torch.manual_seed(sp.seed)
        n = batch["input_features"].shape[0]
        step = max(1, self.model.spec.batching.max_batch_size)
        out: dict[str, list[Any]] = {"sequences": [], "langs": [], "stamps": []}
        for a in range(0, n, step):
            for key, values in self._generate(batch, slice(a, min(n, a + step)), sp, control).items():
                out[key].extend(values)
        return out

    def _generate(
        self, batch: Any, rows_of: slice, sp: SpeechParams, control: RowControl | None
    ) -> dict[str, list[Any]]:
        import torch

        feats = batch["input_features"][rows_of]
        n = feats.shape[0]
        kwargs = sp.generate_kwargs(self.model)
        # The request's rows, seen through their windows: stopped (cancelled, timed out) and counted per token,
        # and streamed when asked
        if control is not None:
            from transformers import StoppingCriteriaList

            rows = _WindowRows(control, batch["owner"][rows_of], batch["single_window"])
            streamer = None
            if rows.streaming:
                streamer = _Streamer(self.model.tokenizer, n, eos_ids(self.model), (), rows)
                kwargs["streamer"] = streamer
            kwargs["stopping_criteria"] = StoppingCriteriaList([_RowStop(streamer, rows, n)])
        out = self.model.module.generate(
            input_features=feats, attention_mask=batch["attention_mask"][rows_of], **kwargs
        )
        sequences = out["sequences"] if isinstance(out, Mapping) else out
        langs: list[int | None] = [None] * n
        if isinstance(out, Mapping) and "segments" in out:
            lang_ids = set((getattr(self.model.module.generation_config, "lang_to_id", None) or {}).values())
            for r, segs in enumerate(out["segments"]):
                if segs:
                    result = segs[0]["result"]
                    full = result["sequences"] if isinstance(result, Mapping) else result
                    langs[r] = next((t for t in full.tolist() if t in lang_ids), None)
        stamps: list[Any] = [None] * n
        if sp.return_timestamps == "word" and isinstance(out, Mapping) and "segments" in out:
            # per row, the time of each generated token (padding excluded), as the pipeline gathers them
            stamps = [torch.cat([seg["token_timestamps"] for seg in segs]).cpu() for segs in out["segments"]]
        return {"sequences": list(sequences.cpu()), "langs": langs, "stamps": stamps}

    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        import torch

        sp: SpeechParams = params["_speech"]
        tok = self.model.tokenizer
        precision = self.model.feature_extractor.chunk_length / self.model.config.max_source_positions
        per_item: list[list[dict[str, Any]]] = [[] for _ in batch["seconds"]]
        pad = tok.pad_token_id
        for r, owner in enumerate(batch["owner"]):
            seq = outputs["sequences"][r]
            seq = seq[seq != pad] if pad is not None else seq  # right padding of shorter rows
            lang = outputs["langs"][r]
            if sp.return_language and lang is not None:
                seq = torch.cat([torch.tensor([lang], dtype=seq.dtype), seq])
            out = {"tokens": seq[None, :], "stride": batch["strides"][r]}
            if outputs["stamps"][r] is not None:
                stamps = outputs["stamps"][r]
                if sp.return_language and lang is not None:  # the language token was put in front
                    stamps = torch.cat([stamps[:1], stamps])
                out["token_timestamps"] = [stamps]
            per_item[owner].append(out)
        results = []
        for i, outs in enumerate(per_item):
            text, optional = tok._decode_asr(  # the pipeline's merge (see the module docstring)
                outs,
                return_timestamps=sp.return_timestamps,
                return_language=sp.return_language,
                time_precision=precision,
            )
            n_tokens = sum(int(o["tokens"].shape[1]) for o in outs)
            result: dict[str, Any] = {
                "text": text,
                "duration": batch["seconds"][i],
                "completion_tokens": n_tokens,
            }
            if "chunks" in optional:
                result["chunks"] = _chunks(optional["chunks"])
            if sp.return_timestamps == "word":  # the segments too, from the same tokens
                result["words"] = result.pop("chunks", [])
                plain = [{k: v for k, v in o.items() if k != "token_timestamps"} for o in outs]
                _, segments = tok._decode_asr(
                    plain, return_timestamps=True, return_language=False, time_precision=precision
                )
                result["chunks"] = _chunks(segments.get("chunks", []))
            if sp.return_language:
                lang = next(
                    (c.get("language") for c in optional.get("chunks", []) if c.get("language")), None
                )
                result["language"] = lang if lang is not None else sp.language_name
            results.append(result)
        return results


def _chunks(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON-ready chunks: timestamps as lists."""
    return [{**c, "timestamp": list(c["timestamp"])} if "timestamp" in c else c for c in chunks]


class _Streamer(BatchStreamer):
    """Whisper's generate puts its decoder prompt (start, language, task tokens: [rows, k]) before each pass,
    and may put it more than once (language detection first): 2-D puts are prompts, 1-D ones new tokens."""

    def put(self, value: Any) -> None:
        if value.dim() == 1:
            self.push(value.tolist())


class _WindowRows:
    """The request rows (items) seen from the batch's window rows: a request is stopped, counted and streamed
    through its windows. Only an audio of one window streams token by token: the windows of a longer one are
    merged across their overlaps after generation, so their text is known only then."""

    def __init__(self, control: RowControl, owner: Sequence[int], single: Sequence[bool]) -> None:
        self.control = control
        self.owner = owner
        self.single = single

    @property
    def streaming(self) -> bool:
        return self.control.streaming

    def emit(self, row: int, delta: str) -> None:
        item = self.owner[row]
        if self.single[item]:
            self.control.emit(item, delta)

    def stop_reason(self, row: int) -> str | None:
        return self.control.stop_reason(self.owner[row])

    def generated(self, rows: Sequence[int]) -> None:
        self.control.generated(sorted({self.owner[r] for r in rows}))
