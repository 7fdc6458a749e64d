"""POST /v1/pipelines/{name} (`{inputs, parameters: {step: {...}}, return_steps, stream}`) and GET /v1/pipelines.

One HTTP request runs every step of a configured pipeline (pipelines/) under one deadline (request_timeout_s or
X-Request-Timeout, from the request's arrival) and one priority (X-Priority). A client that disconnects cancels
the running step, and nothing after it is computed. A failed step answers with its own status and code, and the
error body names `pipeline`, `step`, `model` and `task`. With `stream: true` and a last step that generates text,
its deltas come as server-sent events (`{"delta": ...}`), then the answer (`{"pipeline", "outputs"[, "steps"]}`)
and `[DONE]`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from hf_provider.errors import DeadlineExceeded, ProviderError
from hf_provider.pipelines import PipelineStream
from hf_provider.server.deps import JSONResponse, deadline_of, priority_of, provider_of, until_disconnect
from hf_provider.server.errors import error_body
from hf_provider.server.schemas import PipelineRequest

log = logging.getLogger(__name__)
router = APIRouter()


@router.get("/v1/pipelines")
async def list_pipelines(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": provider_of(request).pipelines.describe()})


@router.post("/v1/pipelines/{name}")
async def run_pipeline(name: str, body: PipelineRequest, request: Request) -> Response:
    provider = provider_of(request)
    kw: dict[str, Any] = {"priority": priority_of(request), "deadline": deadline_of(request)}
    if body.stream:
        stream = await provider.pipeline_stream(name, body.inputs, body.parameters, **kw)
        try:  # the steps before the last and its first token: an error until then still gets its status
            await until_disconnect(request.receive, stream.first())
        except BaseException:
            await stream.aclose()
            raise
        return StreamingResponse(_events(name, stream, body.return_steps), media_type="text/event-stream")
    work = provider.apipeline(name, body.inputs, body.parameters, return_steps=True, **kw)
    answer = await until_disconnect(request.receive, work)
    if not body.return_steps:
        del answer["steps"]
    return JSONResponse(answer)


def _sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n\n"


async def _events(name: str, stream: PipelineStream, return_steps: bool) -> AsyncIterator[bytes]:
    """Deltas, then the answer and [DONE]. An error after the response started cannot change its status: it is
    sent as an error event naming the step (a deadline's too). A client that disconnects cancels the run
    (Starlette cancels this generator; `close` cancels the running step)."""
    try:
        async for delta in stream:
            yield _sse({"delta": delta})
        assert stream.result is not None
        yield _sse(stream.result.body(name, return_steps))
    except (DeadlineExceeded, ProviderError) as e:
        err = error_body(e.message, "server_error", e.code, e.param)
        err["error"].update(getattr(e, "pipeline_step", None) or {})
        yield _sse(err)
    except Exception as e:
        log.error("pipeline %s stream failed with %s", name, type(e).__name__, exc_info=e)
        yield _sse(error_body("Internal server error while streaming.", "server_error", "internal_error"))
    finally:
        stream.close()
    yield b"data: [DONE]\n\n"
