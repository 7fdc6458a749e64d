"""Streamed completions: server-sent events, the usage chunk, and the end of a stream that meets an error."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from hf_provider.errors import DeadlineExceeded, InvalidInput, ProviderError
from hf_provider.provider import TextStream
from hf_provider.server.errors import error_body
from hf_provider.server.schemas import GenerationBody

log = logging.getLogger(__name__)


def sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def check_stream_options(body: GenerationBody) -> None:
    if body.stream_options is not None and not body.stream:
        raise InvalidInput("stream_options is only allowed with stream=true", param="stream_options")


def usage_chunk(body: GenerationBody, base: dict[str, Any]) -> Callable[[dict[str, Any]], bytes] | None:
    """OpenAI's stream_options.include_usage: one more chunk, with no choices and the request's token usage."""
    if body.stream_options is None or not body.stream_options.include_usage:
        return None

    def chunk(result: dict[str, Any]) -> bytes:
        pt, ct = result.get("prompt_tokens", 0), result.get("completion_tokens", 0)
        usage = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
        return sse({**base, "choices": [], "usage": usage})

    return chunk


async def guarded(
    stream: TextStream,
    chunk: Callable[[str, str | None], bytes],
    usage: Callable[[dict[str, Any]], bytes] | None = None,
) -> AsyncIterator[bytes]:
    """The deltas as SSE chunks, then the final chunk with the real finish_reason and [DONE]. An error after the
    response has started cannot change its status: a deadline ends the stream with finish_reason "timeout",
    other errors are sent as an OpenAI-style error event instead of cutting the connection. A client that
    disconnects cancels the generation (Starlette cancels this generator; `close` cancels the request)."""
    try:
        async for delta in stream:
            yield chunk(delta, None)
        yield chunk("", (stream.result or {}).get("finish_reason", "stop"))
        if usage is not None:
            yield usage(stream.result or {})
    except DeadlineExceeded:
        yield chunk("", "timeout")
    except ProviderError as e:
        yield sse(error_body(e.message, "server_error", e.code, e.param))
    except Exception as e:
        log.error("stream failed with %s", type(e).__name__, exc_info=e)
        yield sse(error_body("Internal server error while streaming.", "server_error", "internal_error"))
    finally:
        stream.close()
    yield b"data: [DONE]\n\n"
