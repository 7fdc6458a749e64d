"""automatic-speech-recognition on the tiny Whisper: results equal transformers' pipeline on the same weights and
audio (short and chunked, several audios in one batch), transcription and translation on one weight set, and bad
inputs refused in parse (400) without touching the model."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from hf_provider.errors import AudioTooShort, InvalidAudio, InvalidInput
from hf_provider.runtime.tasks import supported_tasks
from hf_provider.runtime.tasks.speech import windows
from hf_provider.testing.audio import audio_file, tone

ASR = "automatic-speech-recognition"
TONES = [(220.0, 3.0), (660.0, 8.0), (300.0, 70.0)]  # the last one is three windows with strides


@pytest.fixture(scope="module")
def pipe(tiny_models):
    from transformers import pipeline

    warnings.filterwarnings("ignore", message=".*chunk_length_s.*")
    return pipeline(ASR, model=str(tiny_models["whisper"]), device="cpu", dtype=torch.float32)


def test_bad_inputs_are_refused_in_parse(handler) -> None:
    h = handler("whisper", ASR)
    wav = audio_file("wav")
    cases = [
        (b"", AudioTooShort),
        (b"not audio at all", InvalidAudio),
        (wav[: len(wav) // 2], InvalidAudio),
        ("not base64!", InvalidInput),
        ({"raw": [0.0] * 100, "sampling_rate": 16000}, AudioTooShort),
        ({"raw": [0.0] * 4000}, InvalidInput),
        ({"raw": [float("nan")] * 4000, "sampling_rate": 16000}, InvalidInput),
        ("/etc/passwd", InvalidInput),  # a path is never read
        (12, InvalidInput),
        ([], InvalidInput),
    ]
    for inputs, error in cases:
        with pytest.raises(error):
            h.parse(inputs, {})
    for params, name in [
        ({"language": "xx"}, "language"),
        ({"speech_task": "summarize"}, "speech_task"),
        ({"temperature": 3}, "temperature"),
        ({"max_new_tokens": 10_000}, "max_new_tokens"),
        ({"stride_length_s": 20}, "stride_length_s"),
        ({"beams": 4}, "beams"),
    ]:
        with pytest.raises(InvalidInput) as e:
            h.parse(wav, params)
        assert e.value.param == name


def test_only_speech_tasks_on_a_speech_model(loaded) -> None:
    assert supported_tasks(loaded("whisper")) == [ASR]
    assert ASR not in supported_tasks(loaded("t5"))


def test_windows_follow_the_pipeline_arithmetic() -> None:
    assert windows(100, 30, 5, 5) == [
        (0, 30, 0, 5),
        (20, 50, 5, 5),
        (40, 70, 5, 5),
        (60, 90, 5, 5),
        (80, 100, 5, 0),
    ]
    assert windows(10, 30, 5, 5) == [(0, 10, 0, 0)]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"speech_task": "transcribe"},
        {"speech_task": "translate", "language": "fr"},
        {"return_language": True},
    ],
)
def test_batched_results_equal_the_pipeline(handler, run, pipe, params) -> None:
    h = handler("whisper", ASR)
    audios = [tone(seconds, freq) for freq, seconds in TONES]
    got = run(h, [{"raw": a, "sampling_rate": 16000} for a in audios], {"max_new_tokens": 12, **params})
    gen = {"max_new_tokens": 12, "num_beams": 1}
    gen.update({{"speech_task": "task"}.get(k, k): v for k, v in params.items() if k != "return_language"})
    for a, g in zip(audios, got, strict=True):
        want = pipe(
            a.copy(), chunk_length_s=30, generate_kwargs=gen, return_language=params.get("return_language")
        )
        assert g["text"] == want["text"]
        assert g["text"].strip()  # the tiny model says something: equality is not two empty strings
        if params.get("return_language"):
            assert g["language"] == want["chunks"][0]["language"]
    assert len({g["text"] for g in got}) > 1  # the audio matters


def test_timestamps_equal_the_pipeline(handler, run, pipe) -> None:
    a = tone(40.0, 500.0)
    got = run(handler("whisper", ASR), {"raw": a, "sampling_rate": 16000}, {"return_timestamps": True})
    want = pipe(
        a.copy(),
        chunk_length_s=30,
        return_timestamps=True,
        generate_kwargs={"max_new_tokens": 128, "num_beams": 1},
    )
    assert got["text"] == want["text"]
    assert [(c["text"], tuple(c["timestamp"])) for c in got["chunks"]] == [
        (c["text"], c["timestamp"]) for c in want["chunks"]
    ]


def test_word_timestamps_equal_the_pipeline(handler, run, pipe) -> None:
    audios = [tone(3.0, 220.0), tone(40.0, 500.0)]
    got = run(
        handler("whisper", ASR),
        [{"raw": a, "sampling_rate": 16000} for a in audios],
        {"max_new_tokens": 12, "return_timestamps": "word"},
    )
    for a, g in zip(audios, got, strict=True):
        gen = {"max_new_tokens": 12, "num_beams": 1}
        want = pipe(a.copy(), chunk_length_s=30, return_timestamps="word", generate_kwargs=gen)
        assert g["text"] == want["text"]
        assert [(w["text"], tuple(w["timestamp"])) for w in g["words"]] == [
            (c["text"], c["timestamp"]) for c in want["chunks"]
        ]
        assert g["chunks"] and all("timestamp" in c for c in g["chunks"])  # the segments, from the same pass


def test_files_and_resampling(handler, run, pipe) -> None:
    h = handler("whisper", ASR)
    x = tone(3.0, 220.0)
    from hf_provider.testing.audio import encode

    by_file = run(h, encode(x, 16000, "wav", "pcm_s16le"), {"max_new_tokens": 12})
    want = pipe(x.copy(), chunk_length_s=30, generate_kwargs={"max_new_tokens": 12, "num_beams": 1})
    assert by_file["text"] == want["text"] and by_file["duration"] == pytest.approx(3.0)
    for fmt in ("flac", "mp3", "ogg", "m4a"):
        out = run(h, audio_file(fmt), {"max_new_tokens": 4})
        assert isinstance(out["text"], str) and out["duration"] == pytest.approx(3.0, abs=0.1)


def test_silence_is_transcribed_not_refused(handler, run) -> None:
    """OpenAI answers silent audio with a transcription (often empty), not an error: so does this handler."""
    out = run(handler("whisper", ASR), {"raw": np.zeros(16000, np.float32), "sampling_rate": 16000})
    assert isinstance(out["text"], str)


def test_transcription_and_translation_share_the_weights(handler) -> None:
    h = handler("whisper", ASR)
    a, b = (
        h.parse(audio_file("wav"), {"speech_task": "transcribe"}),
        h.parse(audio_file("wav"), {"speech_task": "translate"}),
    )
    assert h.batch_key(a[1]) != h.batch_key(b[1])  # different generate calls, one module
    assert h.model.module is handler("whisper", ASR).model.module


def test_sampling_with_a_seed_repeats_and_prompts_equal_the_pipeline(handler, run, pipe) -> None:
    h = handler("whisper", ASR)
    clip = {"raw": tone(2.0, 330.0), "sampling_rate": 16000}
    p = {"temperature": 0.8, "seed": 7, "max_new_tokens": 8}
    assert run(h, clip, p)["text"] == run(h, clip, p)["text"]
    prompt = "Alice lives in Paris."
    got = run(h, clip, {"prompt": prompt, "max_new_tokens": 8})["text"]
    ids = torch.as_tensor(h.model.tokenizer.get_prompt_ids(prompt, return_tensors="np"))
    gen = {"max_new_tokens": 8, "num_beams": 1, "prompt_ids": ids}
    assert got == pipe(clip["raw"].copy(), chunk_length_s=30, generate_kwargs=gen)["text"]
    with pytest.raises(InvalidInput):
        h.parse(clip, {"prompt": "<|en|>"})  # control tokens in a prompt


def test_windows_run_in_calls_of_at_most_max_batch_size(handler, run) -> None:
    """A long audio is many windows: generate takes them max_batch_size at a time, with the same results."""
    audios = [{"raw": tone(s, f), "sampling_rate": 16000} for f, s in TONES]  # 5 windows
    p = {"max_new_tokens": 6, "return_language": True}
    whole = run(handler("whisper", ASR), audios, p)
    small = handler("whisper", ASR, batching={"max_batch_size": 2})
    calls = []
    generate = small.model.module.generate

    def counted(*args, **kwargs):
        calls.append(kwargs["input_features"].shape[0])
        return generate(*args, **kwargs)

    small.model.module.generate = counted
    try:
        assert run(small, audios, p) == whole
    finally:
        del small.model.module.generate
    assert calls == [2, 2, 1]
