"""Liveness and readiness."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from starlette.responses import Response

from hf_provider.resilience.respawn import restarts
from hf_provider.server.deps import JSONResponse, provider_of

router = APIRouter()


@router.get("/healthz")
async def healthz() -> Response:
    """Alive; under `hfp serve`'s supervisor also how many times it restarted this server and why the last
    one ended (a crash-looping server shows it here, while each new process answers ok)."""
    return JSONResponse({"status": "ok", "pid": os.getpid(), **restarts()})


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
