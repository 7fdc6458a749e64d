"""POST /v1/tasks/{task}: every task the runtime serves, with {"model", "inputs", "parameters"}.

`parameters` are the model's parameters only; how the request is run comes from headers (X-Priority,
X-Request-Timeout), so a body can never steer the provider itself (reserved names get a 400 naming them).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from hf_provider.errors import InvalidInput
from hf_provider.server.deps import (
    JSONResponse,
    deadline_of,
    priority_of,
    provider_of,
    served_headers,
    until_disconnect,
)
from hf_provider.server.schemas import TaskRequest
from hf_provider.types import TASKS

router = APIRouter()


@router.post("/v1/tasks/{task}")
async def run_task(task: str, body: TaskRequest, request: Request) -> Response:
    if task not in TASKS:
        raise InvalidInput(f"unknown task {task!r}; tasks: {', '.join(TASKS)}", param="task")
    if body.parameters.get("stream"):
        raise InvalidInput(
            "streaming is served by /v1/completions and /v1/chat/completions with stream=true",
            param="parameters.stream",
        )
    provider = provider_of(request)
    answer = await until_disconnect(
        request.receive,
        provider.arun_usage(
            body.model,
            task,
            body.inputs,
            body.parameters,
            priority=priority_of(request),
            deadline=deadline_of(request),
        ),
    )
    return JSONResponse(
        {"model": body.model, "task": task, "outputs": answer.result},
        headers=served_headers(answer.served_by, answer.fallback_reason, answer.revision),
    )
