"""Model administration: list, load, unload, pin, unpin; which server this is."""

from __future__ import annotations

import asyncio
import os
import time
from importlib import metadata
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from hf_provider.provider import Provider
from hf_provider.server.deps import JSONResponse, provider_of

router = APIRouter(prefix="/v1/admin")


def record_start(app: FastAPI) -> None:
    """Called by create_app: the start time /v1/admin/server reports."""
    app.state.started_at = time.time()


def models_body(p: Provider) -> dict[str, Any]:
    return p.admin.models()


def server_info(request: Request) -> dict[str, Any]:
    """Host and port as configured (the port the request reached when the configured one is 0: the OS
    picked it), version, pid, start time (create_app's), and the folder holding this server's history."""
    p = provider_of(request)
    cfg = p.settings.server
    port = cfg.port or (request.scope.get("server") or (None, None))[1]
    started = getattr(request.app.state, "started_at", None)
    if started is None:
        import psutil

        started = psutil.Process().create_time()
    store = getattr(getattr(p.observer, "store", None), "path", None)
    return {
        "version": _version(),
        "host": cfg.host,
        "port": port,
        "pid": os.getpid(),
        "started_at": started,
        "uptime_s": round(max(0.0, time.time() - started), 3),
        "home": str(store.parent) if store is not None else None,
    }


def _version() -> str:
    try:
        return metadata.version("hf-provider")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


@router.get("/server")
async def server(request: Request) -> Response:
    return JSONResponse(server_info(request))


@router.get("/models")
async def models(request: Request) -> Response:
    body = models_body(provider_of(request))
    extra = getattr(request.app.state, "models_extra", None)  # on Ray: the replicas (scaling/routes.py)
    if extra is not None:
        body.update(await extra())
    return JSONResponse(body)


@router.post("/models/{name:path}/load")
async def load(name: str, request: Request) -> Response:
    # an operator's load goes at once, even during the pause after a failed load
    return JSONResponse(await asyncio.to_thread(provider_of(request).admin.load, name))


@router.post("/models/{name:path}/unload")
async def unload(name: str, request: Request) -> Response:
    return JSONResponse(await asyncio.to_thread(provider_of(request).admin.unload, name))


@router.post("/models/{name:path}/pin")
async def pin(name: str, request: Request) -> Response:
    return JSONResponse(provider_of(request).admin.pin(name, True))


@router.post("/models/{name:path}/unpin")
async def unpin(name: str, request: Request) -> Response:
    return JSONResponse(provider_of(request).admin.pin(name, False))
