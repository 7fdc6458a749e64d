"""The one table that maps domain errors to HTTP (MLServer `rest/errors.py`), and OpenAI-style error bodies.

Unknown exceptions become a generic 500 carrying the request id; the detail goes to the log, never to the
client.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
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
    (E.PipelineNotFound, 404, "invalid_request_error"),
    (E.TaskNotSupported, 400, "invalid_request_error"),
    (E.Unauthorized, 401, "invalid_request_error"),
    (E.RequestTooLarge, 413, "invalid_request_error"),
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
            body = error_body(exc.message, type_, exc.code, exc.param)
            if (
                step := getattr(exc, "pipeline_step", None)
            ) is not None:  # pipelines/run.py: which step failed
                body["error"].update(step)
            return Response(
                orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
            )
    raise AssertionError("ProviderError is the table's last row")  # pragma: no cover


def validation_error(errs: Sequence[Any]) -> E.InvalidInput:
    """The error of a body that is not JSON or does not fit the schema, naming the first offending field as the
    client wrote it (`messages[0].role`) and what it takes, in our words rather than the validation library's:
    what the client is told is what its error report keeps."""
    first = errs[0] if errs else {}
    if first.get("type") == "json_invalid":
        return E.InvalidJson("Request body is not valid JSON: " + str(first.get("msg", "")))
    ctx = first.get("ctx") or {}
    if first.get("type") == "unsupported_parameter":  # server/schemas.py: a field refused by its table
        return E.UnsupportedField(str(first.get("msg")), param=ctx.get("param"))
    param = _path(first.get("loc", ()))
    if first.get("type") == "extra_forbidden":
        return E.UnsupportedField(
            f"Unsupported parameter {param!r}: it is not a field hf-provider takes here; remove it from the "
            "request.",
            param=param,
        )
    msgs = "; ".join(_say(e) for e in errs[:5])
    return E.InvalidRequest(f"Invalid request: {msgs}", param=param or None)


_TYPES = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be a boolean",
    "bool_parsing": "must be a boolean",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "missing": "is required",
}
_BOUNDS = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">", "less_than": "<"}


def _path(loc: Sequence[Any]) -> str:
    """`messages[0].content` from pydantic's ("body", "messages", 0, "content")."""
    out = ""
    for x in loc:
        if x == "body":
            continue
        if isinstance(x, int):
            out += f"[{x}]"
        else:
            out += ("." if out else "") + str(x)
    return out


def _say(err: Mapping[str, Any]) -> str:
    name, kind, ctx = _path(err.get("loc", ())) or "body", err.get("type", ""), err.get("ctx") or {}
    if kind == "value_error" and "error" in ctx:  # our own validators' messages name the field already
        return str(ctx["error"])
    if kind in _TYPES:
        return f"'{name}' {_TYPES[kind]}"
    for key, op in _BOUNDS.items():
        if kind == key:
            return f"'{name}' must be {op} {ctx.get(_BOUND_CTX[key])}"
    if kind == "literal_error":
        return f"'{name}' must be one of {ctx.get('expected')}"
    if kind == "too_short":
        return f"'{name}' must have at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"'{name}' must have at most {ctx.get('max_length')} item(s)"
    return f"'{name}': {err.get('msg')}"


_BOUND_CTX = {"greater_than_equal": "ge", "less_than_equal": "le", "greater_than": "gt", "less_than": "lt"}


def validation_error_response(errs: Sequence[Any]) -> Response:
    """400 for a body that is not JSON or does not fit the schema (see validation_error)."""
    return provider_error_response(validation_error(errs))


def task_of_path(path: str) -> str:
    """The task an inference route serves, for counting answers refused before the provider saw them."""
    if path.startswith("/v1/tasks/"):
        task = path.removeprefix("/v1/tasks/")
        return task if task in E_TASKS else "-"
    return {
        "/v1/embeddings": "embeddings",
        "/v1/completions": "text-generation",
        "/v1/rerank": "rerank",
        "/v2/rerank": "rerank",
        "/v1/score": "score",
    }.get(path, "text-generation" if path in ("/v1/chat/completions", "/v1/responses") else "-")


def is_inference(path: str) -> bool:
    """A route that serves a model's request (what outcomes count), not an admin or health route."""
    return path.startswith(("/v1/", "/v2/")) and not path.startswith(("/v1/admin", "/v1/models"))


def model_named(body: Any) -> str:
    """The model a request body names ("-" when it names none): a refused request is filed under it."""
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) and model else "-"


def refuse(provider: Any, state: Any, path: str, exc: BaseException, model: str = "-") -> None:
    """Record a request the server ended itself, unless the Provider recorded it already (it records what
    reached it: `context.Call`). `state`: the ASGI scope's state, where the middleware keeps the Call."""
    call = state.get("call") if isinstance(state, dict) else getattr(state, "call", None)
    if provider is None or not is_inference(path) or (call is not None and call.recorded):
        return
    provider.refuse(model, task_of_path(path), exc)
    if call is not None:
        call.recorded = True


def _refuse(request: Request, exc: BaseException, model: str = "-") -> None:
    provider = getattr(request.app.state, "provider", None)
    refuse(provider, request.state, request.url.path, exc, model)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(E.ProviderError)
    async def _provider(request: Request, exc: E.ProviderError) -> Response:
        if isinstance(exc, E.ModelLoadError | E.ConfigError):
            log.error("request %s: %s", getattr(request.state, "request_id", "-"), exc.message)
        elif isinstance(exc, E.StepFailed):  # a pipeline step's internal error: the client saw none of it
            rid = getattr(request.state, "request_id", "-")
            log.error("request %s: %s", rid, exc.message, exc_info=exc.__cause__)
        _refuse(request, exc, exc.model or "-")
        return provider_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        error = validation_error(exc.errors())
        _refuse(request, error, model_named(exc.body))
        return provider_error_response(error)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status_code)
        if exc.status_code == 413:  # the body limit, met while reading it
            _refuse(request, E.RequestTooLarge(str(exc.detail)))
        return json_error(
            exc.status_code, str(exc.detail), type_, code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unknown(request: Request, exc: Exception) -> Response:
        rid = getattr(request.state, "request_id", "-")
        log.error("request %s failed with %s", rid, type(exc).__name__, exc_info=exc)  # masked (reporting)
        provider = getattr(request.app.state, "provider", None)
        call = getattr(request.state, "call", None)
        if provider is None:
            pass
        elif is_inference(request.url.path) and not (call is not None and call.recorded):
            _refuse(request, exc)  # counted and reported as the request's end
        else:  # an admin route's bug, or one after its request was recorded (its answer's serialization)
            provider.report(exc, model="-", request_id=rid)
        # Starlette answers this from ServerErrorMiddleware, outside RequestIdAndLimits: set the header here.
        return json_error(
            500,
            f"Internal server error (request id {rid}).",
            "server_error",
            "internal_error",
            headers={"x-request-id": rid},
        )
