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
    """Ready once start-up loading is done and every model it loads has loaded once, unless a supervised
    component is down (`degraded`, naming it). A model evicted or put to sleep later (memory budget,
    keep_alive) reloads on demand, so it does not make the server unready."""
    provider = provider_of(request)
    models = provider.manager.describe()
    # A model whose start-up load failed is not "loading": it is down, and reported below.
    waiting = (
        [m["name"] for m in models if m["loads"] == 0 and m["keep_alive"] != 0 and not m["error"]]
        if request.app.state.load_on_start
        else []
    )
    if waiting or not request.app.state.started:
        return JSONResponse({"status": "loading", "waiting_for": waiting}, status_code=503)
    down = provider.supervisor.down()
    if down:  # a dead or failing worker must never leave readiness green
        return JSONResponse({"status": "degraded", "down": down}, status_code=503)
    return JSONResponse({"status": "ready", "models": [m["name"] for m in models]})
