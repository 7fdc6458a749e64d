"""Small helpers shared by the routes: the app's Provider, the headers that steer a request, a fast JSON
response, and cancellation of a request whose client disconnected."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson
from fastapi import Request
from starlette.responses import Response

from hf_provider.errors import Cancelled, InvalidInput
from hf_provider.provider import Provider

T = TypeVar("T")


class JSONResponse(Response):
    """orjson is several times faster than json.dumps on long float lists (embeddings)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def served_headers(
    served_by: str, fallback_reason: str | None, revision: str | None = None
) -> dict[str, str]:
    """x-hfp-served-by on every success; x-hfp-fallback-reason when a fallback served the request
    (resilience/fallback.py); x-hfp-revision, the commit of the version that served it (lifecycle/: during a
    swap or canary two versions serve). Configured names, fixed reasons and commits, never client text."""
    headers = {"x-hfp-served-by": served_by}
    if fallback_reason is not None:
        headers["x-hfp-fallback-reason"] = fallback_reason
    if revision is not None:
        headers["x-hfp-revision"] = revision
    return headers


def provider_of(request: Request) -> Provider:
    return request.app.state.provider


def priority_of(request: Request) -> str | None:
    """The X-Priority header as sent; the Provider validates it (the one place priorities are checked)."""
    return request.headers.get("x-priority") or None


def deadline_of(request: Request) -> float:
    """The request's deadline: request_timeout_s (or the shorter X-Request-Timeout) from its arrival."""
    return deadline_from(provider_of(request), request.scope, request.headers.get("x-request-timeout"))


def deadline_from(provider: Provider, scope: dict, header: str | None) -> float:
    return provider.deadline(parse_timeout(header), since=scope.get("state", {}).get("arrived"))


def parse_timeout(value: str | None) -> float | None:
    """Seconds from the X-Request-Timeout header; it can shorten the server's request_timeout_s, never extend it."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInput(
            f"header X-Request-Timeout must be a positive number of seconds, got {value!r}",
            param="X-Request-Timeout",
        )
    return seconds


async def until_disconnect(receive: Any, work: Awaitable[T]) -> T:
    """Await `work` (a request's answer) unless the client disconnects first: then the awaiting task is
    cancelled, which cancels the request in the provider (queued items leave the queue, nothing is computed for
    it afterwards), and `Cancelled` is raised. Call it after the body has been read: the next message an ASGI
    server delivers is then the disconnect."""
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def listen() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        task.cancel()

    watcher = asyncio.ensure_future(listen())
    try:
        return await work
    except asyncio.CancelledError:
        if not gone:
            raise
        task.uncancel()
        raise Cancelled("the client disconnected before the answer was ready") from None
    finally:
        watcher.cancel()
