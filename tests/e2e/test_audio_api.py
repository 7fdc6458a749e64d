"""/v1/audio/transcriptions and /translations over HTTP, with the official `openai` client, against the real
server on loopback serving the tiny Whisper: texts equal transformers' pipeline on the same weights and audio;
every bad upload answers 4xx with an error code and the next request succeeds."""

from __future__ import annotations

import base64
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from openai import OpenAI

from hf_provider.media.audio import decode
from hf_provider.testing.audio import audio_file, encode, tone
from tests.e2e.conftest import serve

MAX_AUDIO = 200_000
MAX_NEW = 24
ASR = "automatic-speech-recognition"


@pytest.fixture(scope="module")
def url(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("audio-e2e")
    config = {
        "home": str(base / "home"),
        "server": {"max_audio_bytes": MAX_AUDIO},
        "models": [
            {
                "name": "whisper",
                "source": str(tiny_models["whisper"]),
                "device": "cpu",
                "dtype": "float32",
                # short generations keep the test quick (the pipeline is asked for the same)
                "defaults": {ASR: {"max_new_tokens": MAX_NEW}},
            },
            {"name": "t5", "source": str(tiny_models["t5"]), "device": "cpu", "tasks": ["summarization"]},
        ],
    }
    with serve(config, base) as served:
        yield served.url


@pytest.fixture(scope="module")
def pipe(tiny_models):
    from transformers import pipeline

    warnings.filterwarnings("ignore", message=".*chunk_length_s.*")
    return pipeline(ASR, model=str(tiny_models["whisper"]), device="cpu", dtype=torch.float32)


def _expected(pipe, x, **gen) -> str:
    return pipe(
        x.copy(), chunk_length_s=30, generate_kwargs={"max_new_tokens": MAX_NEW, "num_beams": 1, **gen}
    )["text"]


def test_openai_client_transcription_and_translation_equal_the_pipeline(url: str, pipe) -> None:
    wav = encode(tone(3.0, 220.0), 16000, "wav", "pcm_s16le")
    # the samples the server decodes (exact for 16 kHz PCM: s16 / 32768, checked in tests/unit/media); the
    # pipeline decodes bytes with an ffmpeg binary, which this machine need not have
    x = decode(wav, 16000)
    with OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=120.0) as client:
        got = client.audio.transcriptions.create(model="whisper", file=("clip.wav", wav))
        assert got.text == _expected(pipe, x, task="transcribe") and got.text.strip()
        fr = client.audio.translations.create(
            model="whisper", file=("clip.wav", wav), extra_body={"language": "fr"}
        )
        assert fr.text == _expected(pipe, x, task="translate", language="fr")
        verbose = client.audio.transcriptions.create(
            model="whisper",
            file=("clip.wav", wav),
            response_format="verbose_json",
            timestamp_granularities=["segment"],
        )
        assert (
            verbose.text
            == pipe(
                x.copy(),
                chunk_length_s=30,
                return_timestamps=True,
                return_language=True,  # verbose_json names the language
                generate_kwargs={"max_new_tokens": MAX_NEW, "num_beams": 1, "task": "transcribe"},
            )["text"]
        )
        assert verbose.duration == pytest.approx(3.0) and verbose.language and verbose.segments
        both = client.audio.transcriptions.create(
            model="whisper",
            file=("clip.wav", wav),
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
        assert both.text == verbose.text and both.words and both.segments
        assert all(w.start <= w.end for w in both.words)
        assert "".join(w.word for w in both.words).split() == "".join(both.text.split()).split()
        text = client.audio.transcriptions.create(
            model="whisper", file=("clip.wav", wav), response_format="text"
        )
        assert text == got.text


def test_formats_streaming_and_tasks_route(url: str) -> None:
    with httpx.Client(base_url=url, timeout=120.0) as c:
        wav = audio_file("wav")
        plain = c.post("/v1/audio/transcriptions", data={"model": "whisper"}, files={"file": ("a.wav", wav)})
        assert plain.status_code == 200
        srt = c.post(
            "/v1/audio/transcriptions",
            data={"model": "whisper", "response_format": "srt"},
            files={"file": ("a.wav", wav)},
        )
        assert srt.status_code == 200 and srt.text.startswith("1\n00:00:")
        vtt = c.post(
            "/v1/audio/transcriptions",
            data={"model": "whisper", "response_format": "vtt"},
            files={"file": ("a.wav", wav)},
        )
        assert vtt.status_code == 200 and vtt.text.startswith("WEBVTT")
        stream = c.post(
            "/v1/audio/transcriptions",
            data={"model": "whisper", "stream": "true"},
            files={"file": ("a.wav", wav)},
        )
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        import json

        events = [json.loads(line[6:]) for line in stream.text.splitlines() if line.startswith("data: {")]
        done = events[-1]
        assert done["type"] == "transcript.text.done" and done["text"] == plain.json()["text"]
        assert "".join(e["delta"] for e in events[:-1]) == done["text"]
        for fmt in ("mp3", "flac", "ogg", "m4a"):
            r = c.post(
                "/v1/audio/transcriptions",
                data={"model": "whisper"},
                files={"file": (f"a.{fmt}", audio_file(fmt))},
            )
            assert r.status_code == 200, (fmt, r.text)
        r = c.post(
            f"/v1/tasks/{ASR}",
            json={
                "model": "whisper",
                "inputs": base64.b64encode(wav).decode(),
                "parameters": {"speech_task": "transcribe"},
            },
        )
        assert r.status_code == 200 and r.json()["outputs"]["text"] == plain.json()["text"]


def test_bad_uploads_answer_4xx_and_the_next_request_succeeds(url: str) -> None:
    wav = audio_file("wav")
    cases = [
        ({}, ("a.wav", b"RIFF\x00\x00\x00\x00WAVEjunk" * 8), 400, "invalid_audio"),
        ({}, ("a.mp3", b"plain text pretending to be mp3"), 400, "invalid_audio"),
        ({}, ("a.wav", b"\x89PNG\r\n\x1a\n" + bytes(100)), 400, "invalid_audio"),
        ({}, ("a.wav", wav[: len(wav) // 2]), 400, "invalid_audio"),
        ({}, ("a.wav", b""), 400, "audio_too_short"),
        ({}, ("a.wav", encode(tone(0.05), 16000, "wav", "pcm_s16le")), 400, "audio_too_short"),
        ({}, ("a.wav", bytes(MAX_AUDIO + 1)), 413, "request_too_large"),
        ({"response_format": "xml"}, ("a.wav", wav), 400, "invalid_input"),
        ({"language": "klingon"}, ("a.wav", wav), 400, "invalid_input"),
        ({"temperature": "hot"}, ("a.wav", wav), 400, "invalid_input"),
        ({"chunking_strategy": "auto"}, ("a.wav", wav), 400, "unsupported_parameter"),
        ({"timestamp_granularities[]": "word"}, ("a.wav", wav), 400, "invalid_input"),  # needs verbose_json
        (
            {"response_format": "verbose_json", "timestamp_granularities[]": "char"},
            ("a.wav", wav),
            400,
            "invalid_input",
        ),
        ({"model": "nope"}, ("a.wav", wav), 404, "model_not_found"),
        ({"model": "t5"}, ("a.wav", wav), 400, "task_not_supported"),  # a text model asked to transcribe
    ]
    with httpx.Client(base_url=url, timeout=120.0) as c:
        for extra, file, status, code in cases:
            r = c.post("/v1/audio/transcriptions", data={"model": "whisper", **extra}, files={"file": file})
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), (extra, r.text)
            ok = c.post("/v1/audio/transcriptions", data={"model": "whisper"}, files={"file": ("a.wav", wav)})
            assert ok.status_code == 200, ok.text
        r = c.post("/v1/audio/transcriptions", data={"model": "whisper"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "file"
        r = c.post("/v1/tasks/text-generation", json={"model": "whisper", "inputs": "hi"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "task_not_supported"
        r = c.post("/v1/audio/transcriptions", data={"model": "whisper"}, files={"file": ("a.wav", wav)})
        assert r.status_code == 200
