"""The one table that maps domain errors to HTTP (MLServer `rest/errors.py`), and OpenAI-style error bodies.

Unknown exceptions become a generic 500 carrying the request id; the detail goes to the log, never to the
client.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from hf_provider import errors as E
from hf_provider.types import TASKS as E_TASKS

log = logging.getLogger(__name__)

# (error class, HTTP status, OpenAI error type). First match wins, so subclasses come before their bases.
ERROR_TABLE: tuple[tuple[type[E.ProviderError], int, str], ...] = (
    (E.ModelNotFound, 404, "invalid_request_error"),
    (E.TaskNotSupported, 400, "invalid_request_error"),
    (E.TooManyItems, 413, "invalid_request_error"),
    (E.InvalidInput, 400, "invalid_request_error"),
    (E.VersionConflict, 409, "invalid_request_error"),  # lifecycle/: another swap or canary step is running
    (E.Overloaded, 429, "rate_limit_error"),
    (E.CircuitOpen, 503, "service_unavailable"),  # the model is failing: refused at once, with Retry-After
    (E.WorkerCrashed, 503, "service_unavailable"),  # its worker process died: retry, or a fallback serves it
    (E.DeviceFailed, 503, "service_unavailable"),  # its device context is poisoned until a reload
    (E.DeadlineExceeded, 504, "timeout_error"),
    (E.Cancelled, 499, "invalid_request_error"),  # nginx's "client closed request": nobody reads it
    (E.Unavailable, 503, "service_unavailable"),
    (E.ConfigError, 500, "server_error"),
    (E.LoadBackoff, 503, "service_unavailable"),  # a load failed moments ago: Retry-After says when to retry
    # a cached file is corrupt and could not be downloaded again now: retryable once the Hub is reachable
    (E.CacheCorrupt, 503, "service_unavailable"),
    (E.ModelLoadError, 500, "server_error"),
    (E.ProviderError, 500, "server_error"),
)


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def json_error(
    status: int,
    message: str,
    type_: str,
    code: str | None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        orjson.dumps(error_body(message, type_, code, param)),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


async def send_error(
    send: Any, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Answer from plain ASGI middleware (before any framework runs): a JSON error body and its headers."""
    raw = orjson.dumps(body)
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw})


def provider_error_response(exc: E.ProviderError) -> Response:
    for cls, status, type_ in ERROR_TABLE:
        if isinstance(exc, cls):
            headers = None
            retry = getattr(exc, "retry_after", None)
            if status in (429, 503) and retry is not None:
                headers = {"Retry-After": str(max(1, math.ceil(retry)))}
            return json_error(status, exc.message, type_, exc.code, exc.param, headers)
    raise AssertionError("ProviderError is the table's last row")  # pragma: no cover


def validation_error_response(errs: Sequence[Any]) -> Response:
    """400 for a body that is not JSON or does not fit the schema, naming the first offending field."""
    first = errs[0] if errs else {}
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    if first.get("type") == "json_invalid":
        return json_error(
            400,
            "Request body is not valid JSON: " + str(first.get("msg", "")),
            "invalid_request_error",
            "invalid_json",
        )
    param = ".".join(loc) or None
    if first.get("type") == "extra_forbidden":
        return json_error(
            400,
            f"Unsupported field {param!r}: hf-provider does not implement it; remove it from the request.",
            "invalid_request_error",
            "unsupported_field",
            param,
        )
    msgs = "; ".join(
        f"{'.'.join(str(x) for x in e.get('loc', ()) if x != 'body') or 'body'}: {e.get('msg')}"
        for e in errs[:5]
    )
    return json_error(400, f"Invalid request: {msgs}", "invalid_request_error", "invalid_request", param)


def task_of_path(path: str) -> str:
    """The task an inference route serves, for counting answers refused before the provider saw them."""
    if path.startswith("/v1/tasks/"):
        task = path.removeprefix("/v1/tasks/")
        return task if task in E_TASKS else "-"
    return {"/v1/embeddings": "embeddings", "/v1/completions": "text-generation"}.get(
        path, "text-generation" if path == "/v1/chat/completions" else "-"
    )


def record_refusal(request: Request, exc: Exception) -> None:
    """Count a 4xx answered by the server itself (bad body, bad header): the provider counts its own."""
    provider = getattr(request.app.state, "provider", None)
    if (
        provider is None
        or not request.url.path.startswith("/v1/")
        or request.url.path.startswith("/v1/admin")
    ):
        return
    if isinstance(exc, E.ProviderError):
        provider.record_refusal("-", task_of_path(request.url.path), exc)
    else:
        provider.record_outcome("-", task_of_path(request.url.path), "client_error", type(exc).__name__)
        provider.report(exc, model="-", phase="parse")


def report_unknown(request: Request, exc: Exception) -> None:
    """The error report of an exception that reached the 500 handler unreported (a bug in a route)."""
    provider = getattr(request.app.state, "provider", None)
    if provider is not None:
        provider.report(exc, model="-", request_id=getattr(request.state, "request_id", None))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(E.ProviderError)
    async def _provider(request: Request, exc: E.ProviderError) -> Response:
        if isinstance(exc, E.ModelLoadError | E.ConfigError):
            log.error("request %s: %s", getattr(request.state, "request_id", "-"), exc.message)
        record_refusal(request, exc)
        return provider_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        record_refusal(request, exc)
        return validation_error_response(exc.errors())

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status_code)
        return json_error(
            exc.status_code, str(exc.detail), type_, code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unknown(request: Request, exc: Exception) -> Response:
        rid = getattr(request.state, "request_id", "-")
        log.error("request %s failed with %s", rid, type(exc).__name__, exc_info=exc)  # masked (reporting)
        report_unknown(request, exc)
        # Starlette answers this from ServerErrorMiddleware, outside RequestIdAndLimits: set the header here.
        return json_error(
            500,
            f"Internal server error (request id {rid}).",
            "server_error",
            "internal_error",
            headers={"x-request-id": rid},
        )
