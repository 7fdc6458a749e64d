"""GET /v1/admin/loop-lag: the samples of the event-loop lag probe (server/loadshed.py LagProbe), included only
when `[server] lag_probe_ms` is set."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.responses import Response

from hf_provider.server.deps import JSONResponse

router = APIRouter(prefix="/v1/admin")


@router.get("/loop-lag")
async def loop_lag(request: Request, since: float = 0.0) -> Response:
    """`now` on the loop's clock (a client on another clock aligns its own with it), and each sample fired at or
    after `since`: [when, how late in ms]."""
    probe = request.app.state.lag_probe
    return JSONResponse(
        {
            "now": asyncio.get_running_loop().time(),
            "interval_ms": probe.interval_s * 1000,
            "samples": [[t, late * 1000] for t, late in probe.since(since)],
        }
    )
