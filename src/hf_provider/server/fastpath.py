"""A direct ASGI path for POST /v1/embeddings, the route that sees the most (and the smallest) requests.

Written by hand because FastAPI's per-request machinery (route matching over every route, dependency solving, body
re-validation, its telemetry hooks reading the environment) costs more CPU than encoding one sentence on a small
CPU, and that CPU is taken from the model: on 2 cores it cut served throughput for one-sentence requests by a
quarter. The body is parsed with orjson and validated with the same pydantic schema; errors go through the same
table (server/errors.py) as every other route, so clients see no difference. The FastAPI route stays registered
for the OpenAPI schema.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from hf_provider.errors import InvalidJson, ProviderError
from hf_provider.provider import Provider
from hf_provider.server.deps import deadline_from, until_disconnect
from hf_provider.server.errors import (
    json_error,
    model_named,
    provider_error_response,
    refuse,
    validation_error,
)
from hf_provider.server.routes.openai import embeddings_payload
from hf_provider.server.schemas import EmbeddingsRequest

log = logging.getLogger(__name__)
_BODY = TypeAdapter(EmbeddingsRequest)
_PATH = "/v1/embeddings"


class EmbeddingsFastPath:
    def __init__(self, app: Any, provider: Provider) -> None:
        self.app = app
        self.provider = provider

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != _PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        response = await self._handle(scope, receive)
        await response(scope, receive, send)

    async def _handle(self, scope: dict, receive: Any) -> Response:
        chunks = []
        try:
            while True:
                message = await receive()  # RequestIdAndLimits' receive raises 413 past the body limit
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
        except HTTPException as e:
            return json_error(e.status_code, str(e.detail), "invalid_request_error", "request_too_large")
        try:
            raw = orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as e:
            return self._refused(scope, InvalidJson(f"Request body is not valid JSON: {e}"))
        try:
            body = _BODY.validate_python(raw)
        except ValidationError as e:
            return self._refused(scope, validation_error(e.errors()), model_named(raw))
        priority = timeout = None
        for k, v in scope["headers"]:
            if k == b"x-priority":
                priority = v.decode("latin-1")
            elif k == b"x-request-timeout":
                timeout = v.decode("latin-1")
        try:
            deadline = deadline_from(self.provider, scope, timeout)
            work = embeddings_payload(self.provider, body, priority, deadline)
            payload, headers = await until_disconnect(receive, work)
        except ProviderError as e:
            return self._refused(scope, e, body.model)  # recorded once: the Provider's own are marked
        except Exception as e:
            rid = scope.get("state", {}).get("request_id", "-")
            log.error("request %s failed with %s", rid, type(e).__name__, exc_info=e)
            refuse(self.provider, scope.get("state", {}), _PATH, e, body.model)
            return json_error(
                500, f"Internal server error (request id {rid}).", "server_error", "internal_error"
            )
        body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)  # vectors are numpy arrays
        return Response(body, media_type="application/json", headers=headers)

    def _refused(self, scope: dict, error: ProviderError, model: str = "-") -> Response:
        refuse(self.provider, scope.get("state", {}), _PATH, error, model)
        return provider_error_response(error)
