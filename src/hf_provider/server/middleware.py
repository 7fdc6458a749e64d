"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware on every request): request ids and a body-size limit."""

from __future__ import annotations

import itertools
import os
import re
import time
from typing import Any

from starlette.exceptions import HTTPException

from hf_provider.context import CALL, REQUEST_ID, Call
from hf_provider.server.errors import error_body, send_error

AUDIO_PREFIX = "/v1/audio/"
_RID_OK = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")
# Request ids: a random per-process prefix and a counter, unique without a uuid4 (os.urandom) per request.
_RID_PREFIX = os.urandom(6).hex()
_RID_SEQ = itertools.count(1)


class RequestIdAndLimits:
    """Adds `x-request-id` to every response (the client's own when well-formed, else a new one) and answers 413
    when the body exceeds `max_body_bytes`, by Content-Length up front or by counting a chunked body."""

    def __init__(self, app: Any, max_body_bytes: int, max_audio_bytes: int | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # audio uploads (multipart files) have their own limit ([server] max_audio_bytes)
        self.max_audio_bytes = max_body_bytes if max_audio_bytes is None else max_audio_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        length = None
        for k, v in scope["headers"]:
            if k == b"x-request-id":
                s = v.decode("latin-1")
                rid = s if _RID_OK.match(s) else None
            elif k == b"content-length":
                length = int(v) if v.isdigit() else None
        rid = rid or f"{_RID_PREFIX}-{next(_RID_SEQ):x}"
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        state["arrived"] = time.monotonic()  # a request's deadline counts from here
        REQUEST_ID.set(rid)  # for error reports; this task's context (and threads it starts) only
        # Whether this request's outcome is recorded (context.Call): the Provider marks what it records, the
        # error handlers record the rest. In the scope's state too: the 500 handler runs outside this context.
        state["call"] = call = Call(state["arrived"])
        CALL.set(call)
        rid_header = (b"x-request-id", rid.encode())

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], rid_header]
            await send(message)

        audio = scope["path"].startswith(AUDIO_PREFIX)
        limit = self.max_audio_bytes if audio else self.max_body_bytes
        message = self._too_large_msg(limit, "MAX_AUDIO_BYTES" if audio else "MAX_BODY_BYTES")
        if length is not None and length > limit:
            await send_error(
                send_with_id, 413, error_body(message, "invalid_request_error", "request_too_large")
            )
            return

        seen = 0

        async def limited_receive() -> dict:
            # FastAPI re-raises an HTTPException met while reading the body, so the 413 flows through the
            # normal error handlers (OpenAI body, request id) without a second response being started here.
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, message)
            return message

        await self.app(scope, limited_receive, send_with_id)

    @staticmethod
    def _too_large_msg(limit: int, setting: str) -> str:
        return (
            f"Request body exceeds the {limit}-byte limit (HFP_SERVER__{setting}); "
            "send fewer or shorter inputs per request."
        )
