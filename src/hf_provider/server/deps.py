"""Small helpers shared by the routes: the app's Provider, request priority, a fast JSON response."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from hf_provider.errors import InvalidInput
from hf_provider.provider import Provider
from hf_provider.scheduling.queue import PRIORITIES


class JSONResponse(Response):
    """orjson is several times faster than json.dumps on long float lists (embeddings)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def provider_of(request: Request) -> Provider:
    return request.app.state.provider


def priority_of(request: Request, explicit: str | None = None) -> str:
    value = explicit or request.headers.get("x-priority") or "interactive"
    if value not in PRIORITIES:
        raise InvalidInput(
            f"priority must be one of {', '.join(PRIORITIES)} (header X-Priority or parameter "
            f"'priority'), got {value!r}",
            param="priority",
        )
    return value
