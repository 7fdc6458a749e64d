"""Model administration: list, load, unload, pin, unpin."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.responses import Response

from hf_provider.server.deps import JSONResponse, provider_of

router = APIRouter(prefix="/v1/admin")


@router.get("/models")
async def models(request: Request) -> Response:
    p = provider_of(request)
    return JSONResponse({"models": p.manager.describe(), "memory": p.manager.memory_view()})


def _one(request: Request, name: str) -> dict:
    p = provider_of(request)
    p.manager.entry(name)  # 404 for unknown names
    return next(d for d in p.manager.describe() if d["name"] == name)


@router.post("/models/{name:path}/load")
async def load(name: str, request: Request) -> Response:
    p = provider_of(request)
    p.manager.entry(name)
    await asyncio.to_thread(p.manager.get, name)
    return JSONResponse(_one(request, name))


@router.post("/models/{name:path}/unload")
async def unload(name: str, request: Request) -> Response:
    p = provider_of(request)
    p.manager.entry(name)
    await asyncio.to_thread(p.manager.unload, name)
    return JSONResponse(_one(request, name))


@router.post("/models/{name:path}/pin")
async def pin(name: str, request: Request) -> Response:
    provider_of(request).manager.set_pinned(name, True)
    return JSONResponse(_one(request, name))


@router.post("/models/{name:path}/unpin")
async def unpin(name: str, request: Request) -> Response:
    provider_of(request).manager.set_pinned(name, False)
    return JSONResponse(_one(request, name))
