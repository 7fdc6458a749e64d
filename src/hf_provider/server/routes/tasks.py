"""POST /v1/tasks/{task}: every task the runtime serves, with {"model", "inputs", "parameters"}."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from hf_provider.errors import InvalidInput
from hf_provider.server.deps import JSONResponse, priority_of, provider_of
from hf_provider.server.schemas import TaskRequest
from hf_provider.spec import TASKS

router = APIRouter()


@router.post("/v1/tasks/{task}")
async def run_task(task: str, body: TaskRequest, request: Request) -> Response:
    if task not in TASKS:
        raise InvalidInput(f"unknown task {task!r}; tasks: {', '.join(TASKS)}", param="task")
    params = dict(body.parameters)
    priority = priority_of(request, params.pop("priority", None))
    if params.pop("stream", False):
        raise InvalidInput(
            "streaming is served by /v1/completions and /v1/chat/completions with stream=true",
            param="parameters.stream",
        )
    provider = provider_of(request)
    outputs = await provider.arun(body.model, task, body.inputs, priority=priority, **params)
    return JSONResponse({"model": body.model, "task": task, "outputs": outputs})
