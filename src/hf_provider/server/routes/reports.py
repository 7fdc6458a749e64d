"""GET /v1/admin/errors: grouped, redacted error reports (reporting/), most recently seen first."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from hf_provider.errors import InvalidInput
from hf_provider.reporting.reports import ERROR_CLASSES
from hf_provider.server.deps import JSONResponse, provider_of
from hf_provider.spec import parse_duration

router = APIRouter()


def parse_since(value: str | None, now: float) -> float | None:
    """`since` as unix seconds (a number) or a look-back duration such as '15m' or '1d'."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return now - parse_duration(value)
    except ValueError:
        raise InvalidInput(
            f"since must be unix seconds or a duration such as '15m' or '1d', got {value!r}", param="since"
        ) from None


@router.get("/v1/admin/errors")
async def errors(
    request: Request,
    model: str | None = None,
    since: str | None = None,
    error_class: str | None = Query(None, alias="class"),
) -> Response:
    if error_class is not None and error_class not in ERROR_CLASSES:
        raise InvalidInput(
            f"class must be one of {', '.join(ERROR_CLASSES)}, got {error_class!r}", param="class"
        )
    provider = provider_of(request)
    start = parse_since(since, time.time())
    # A flush and a read of a small SQLite file: off the event loop all the same.
    groups = await asyncio.to_thread(provider.errors, model=model, since=start, error_class=error_class)
    return JSONResponse({"groups": groups})
