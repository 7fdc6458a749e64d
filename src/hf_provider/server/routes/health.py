"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from hf_provider.server.deps import JSONResponse, provider_of

router = APIRouter()


@router.get("/healthz")
async def healthz() -> Response:
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Ready when every model configured to load at start is loaded (models with keep_alive may sleep)."""
    provider = provider_of(request)
    models = provider.manager.describe()
    waiting = [m["name"] for m in models if m["state"] != "ready" and m["keep_alive"] is None]
    if waiting or not request.app.state.started:
        return JSONResponse({"status": "loading", "waiting_for": waiting}, status_code=503)
    return JSONResponse({"status": "ready", "models": [m["name"] for m in models]})
