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
    state = request.app.state
    body = provider_of(request).admin.readiness(started=state.started, load_on_start=state.load_on_start)
    return JSONResponse(body, status_code=200 if body["status"] == "ready" else 503)
