"""Model versions: history, swap, rollback, canary (lifecycle/). Operations load weights, so they run on a worker
thread; the event loop keeps serving meanwhile."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from hf_provider.server.deps import JSONResponse, provider_of

router = APIRouter(prefix="/v1/admin")


class SwapBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    revision: str = Field(
        min_length=1, max_length=256, description="a branch, tag or commit of the model's repo"
    )


class CanaryBody(SwapBody):
    percent: float = Field(gt=0, lt=100, description="share of the model's requests the candidate serves")


@router.get("/models/{name:path}/history")
async def history(name: str, request: Request, limit: int = Query(100, ge=1, le=1000)) -> Response:
    lc = provider_of(request).lifecycle
    return JSONResponse({"model": name, "events": lc.events(name, limit)})


@router.get("/models/{name:path}/versions")
async def versions(name: str, request: Request) -> Response:
    return JSONResponse(provider_of(request).lifecycle.status(name))


@router.post("/models/{name:path}/swap")
async def swap(name: str, body: SwapBody, request: Request) -> Response:
    lc = provider_of(request).lifecycle
    return JSONResponse(await asyncio.to_thread(lc.swap, name, body.revision, actor="admin"))


@router.post("/models/{name:path}/rollback")
async def rollback(name: str, request: Request) -> Response:
    lc = provider_of(request).lifecycle
    return JSONResponse(await asyncio.to_thread(lc.rollback, name, actor="admin"))


@router.post("/models/{name:path}/canary/promote")
async def promote(name: str, request: Request) -> Response:
    lc = provider_of(request).lifecycle
    return JSONResponse(await asyncio.to_thread(lc.promote, name, actor="admin"))


@router.post("/models/{name:path}/canary/abort")
async def abort(name: str, request: Request) -> Response:
    lc = provider_of(request).lifecycle
    return JSONResponse(await asyncio.to_thread(lc.abort, name, actor="admin"))


@router.post("/models/{name:path}/canary")
async def canary(name: str, body: CanaryBody, request: Request) -> Response:
    lc = provider_of(request).lifecycle
    result = await asyncio.to_thread(lc.start_canary, name, body.revision, body.percent, actor="admin")
    return JSONResponse(result)
