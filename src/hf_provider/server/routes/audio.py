"""OpenAI's audio routes: POST /v1/audio/transcriptions and /v1/audio/translations (multipart uploads).

Both run the model's automatic-speech-recognition task (runtime/tasks/speech.py) with task=transcribe or
translate: one Whisper weight set serves both. Fields are OpenAI's (`file`, `model`, `language`, `prompt`,
`response_format`, `temperature`, `timestamp_granularities[]`, `stream`); a field this server does not implement
is refused with 400, never ignored. The upload's size limit is `[server] max_audio_bytes` (413, middleware.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.datastructures import FormData, UploadFile
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from hf_provider.errors import DeadlineExceeded, InvalidAudio, InvalidInput, ProviderError, UnsupportedField
from hf_provider.server import transcripts
from hf_provider.server.deps import (
    JSONResponse,
    deadline_of,
    priority_of,
    provider_of,
    served_headers,
    until_disconnect,
)
from hf_provider.server.errors import error_body

router = APIRouter()
TASK = "automatic-speech-recognition"
_FIELDS = {
    "transcribe": frozenset(
        {"file", "model", "language", "prompt", "response_format", "temperature", "stream"}
        | {"timestamp_granularities[]", "timestamp_granularities"}
    ),
    # OpenAI's translations take no language (the output is English); here it names the spoken one, if known
    "translate": frozenset({"file", "model", "language", "prompt", "response_format", "temperature"}),
}


@router.post("/v1/audio/transcriptions")
async def transcriptions(request: Request) -> Response:
    return await _serve(request, "transcribe")


@router.post("/v1/audio/translations")
async def translations(request: Request) -> Response:
    return await _serve(request, "translate")


def _one(form: FormData, name: str) -> str | None:
    values = form.getlist(name)
    if len(values) > 1:
        raise InvalidInput(f"field '{name}' was sent {len(values)} times; send it once", param=name)
    if not values:
        return None
    v = values[0]
    if not isinstance(v, str):
        raise InvalidInput(f"field '{name}' must be a text field, not a file", param=name)
    return v


def _flag(form: FormData, name: str) -> bool:
    v = (_one(form, name) or "false").strip().lower()
    if v not in ("true", "false"):
        raise InvalidInput(f"field '{name}' must be true or false, got {v!r}", param=name)
    return v == "true"


async def _read(request: Request, task: str) -> tuple[str, bytes, dict[str, Any], str, bool]:
    """(model, audio bytes, the task's parameters, response_format, stream) from the multipart form."""
    async with request.form(max_files=1, max_fields=32) as form:
        unknown = sorted(set(form.keys()) - _FIELDS[task])
        if unknown:
            raise UnsupportedField(
                f"Unsupported field {unknown[0]!r} for /v1/audio/{task.replace('transcribe', 'transcriptions')}"
                f"{'s' if task == 'translate' else ''}; allowed: {', '.join(sorted(_FIELDS[task]))}",
                param=unknown[0],
            )
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput(
                "field 'file' is required: the audio file as a multipart upload (wav, flac, mp3, ogg, m4a, webm)",
                param="file",
            )
        data = await upload.read()
        model = _one(form, "model")
        if not model:
            raise InvalidInput("field 'model' is required", param="model")
        fmt = _one(form, "response_format") or "json"
        if fmt not in transcripts.FORMATS:
            raise InvalidInput(
                f"response_format {fmt!r} is not supported; use one of {', '.join(transcripts.FORMATS)}",
                param="response_format",
            )
        params: dict[str, Any] = {"speech_task": task}
        for name in ("language", "prompt"):
            if (v := _one(form, name)) is not None and v != "":
                params[name] = v
        if (t := _one(form, "temperature")) is not None:
            try:
                params["temperature"] = float(t)
            except ValueError:
                raise InvalidInput(f"temperature must be a number, got {t!r}", param="temperature") from None
        grains = [
            g for g in form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
        ]
        for g in grains:
            if g not in ("segment", "word"):
                raise InvalidInput(
                    f"timestamp_granularities takes 'segment' (and 'word'), got {g!r}",
                    param="timestamp_granularities[]",
                )
        if grains and fmt != "verbose_json":
            raise InvalidInput(
                "timestamp_granularities needs response_format=verbose_json",
                param="timestamp_granularities[]",
            )
        stream = _flag(form, "stream") if "stream" in form else False
    if stream and fmt not in ("json", "text"):
        raise InvalidInput("stream=true answers json or text events; not " + fmt, param="stream")
    if fmt in transcripts.TIMED:
        params["return_timestamps"] = "word" if "word" in grains else True
        params["_granularities"] = grains or ["segment"]
    if fmt == "verbose_json":
        params["return_language"] = True
    return model, data, params, fmt, stream


def _as_file(e: InvalidAudio) -> InvalidAudio:
    """The handler names its input 'inputs'; here the client sent it as the form field 'file'."""
    return type(e)(e.message.replace("'inputs'", "'file'", 1), model=e.model, task=e.task, param="file")


async def _serve(request: Request, task: str) -> Response:
    try:
        return await _answer(request, task)
    except InvalidAudio as e:
        raise _as_file(e) from None


async def _answer(request: Request, task: str) -> Response:
    model, data, params, fmt, stream = await _read(request, task)
    grains = params.pop("_granularities", ["segment"])
    provider = provider_of(request)
    if stream:
        return await _stream(request, model, data, params)
    work = provider.arun_usage(
        model, TASK, data, params, priority=priority_of(request), deadline=deadline_of(request)
    )
    answer = await until_disconnect(request.receive, work)
    headers = served_headers(answer.served_by, answer.fallback_reason, answer.revision)
    content, media = transcripts.body(fmt, task, answer.result, float(params.get("temperature", 0.0)), grains)
    if media == "application/json":
        return JSONResponse(content, headers=headers)
    return PlainTextResponse(content, media_type=media, headers=headers)


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


async def _stream(request: Request, model: str, data: bytes, params: dict[str, Any]) -> Response:
    """OpenAI's transcript events: `transcript.text.delta` as text is decoded, then `transcript.text.done` with
    the whole text. An audio of one 30 s window streams token by token; a longer one is merged across its
    windows' overlaps after generation, so its text comes as one delta at the end."""
    provider = provider_of(request)
    s = await provider.open_stream(
        model, TASK, data, params, priority=priority_of(request), deadline=deadline_of(request)
    )
    try:
        await until_disconnect(request.receive, s.first())
    except BaseException:
        s.close()
        raise
    if s.request.settled and s.request.outcome != "ok":
        s.close()
        s.request.future.result()  # raises the request's error with its status code

    async def events() -> AsyncIterator[bytes]:
        sent = ""
        try:
            async for delta in s:
                sent += delta
                yield _event({"type": "transcript.text.delta", "delta": delta})
            text = (s.result or {}).get("text", sent)
            if text.startswith(sent) and len(text) > len(sent):
                yield _event({"type": "transcript.text.delta", "delta": text[len(sent) :]})
            yield _event({"type": "transcript.text.done", "text": text})
        except DeadlineExceeded as e:
            yield _event(error_body(e.message, "timeout_error", e.code))
        except ProviderError as e:
            yield _event(error_body(e.message, "server_error", e.code, e.param))
        except asyncio.CancelledError:
            raise
        finally:
            s.close()
        yield b"data: [DONE]\n\n"

    headers = served_headers(s.request.served_by, s.request.fallback_reason, s.request.revision)
    headers["x-request-stream-id"] = uuid.uuid4().hex
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
