"""Monitoring routes: GET /v1/admin/findings (regressions and anomalies) and GET /v1/admin/slo (objectives and
error budgets), and `install`, which wires the observer's monitoring parts to the provider."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from hf_provider.lifecycle.history import serving_events
from hf_provider.observability import slo
from hf_provider.observability.monitor import FindingsMonitor
from hf_provider.observability.scrape import ServerGauges, set_slo_targets

router = APIRouter()


def install(app: FastAPI, provider: Any) -> None:
    """SLO targets and gauges on the observer's metrics, the findings monitor on its thread, the routes."""
    obs = provider.observer
    admin = provider.admin
    obs.slo_p95_s = set_slo_targets(obs.metrics, list(admin.specs().values()))
    obs.scrape_hooks.append(ServerGauges(provider, obs.metrics))
    if obs.monitor is None:
        obs.monitor = FindingsMonitor(
            obs.store,
            models=admin.names,
            serving=serving_events(provider.lifecycle.history),
            metrics=obs.metrics,
        )
    app.include_router(router)


def findings_body(provider: Any, refresh: bool = False) -> dict[str, Any]:
    obs = provider.observer
    mon: FindingsMonitor = obs.monitor
    if refresh or mon.evaluated_at is None:
        obs.flush()
        mon.evaluate()
    return {"evaluated_at": mon.evaluated_at, "window_s": mon.window_s, "findings": mon.latest()}


def slo_body(provider: Any) -> dict[str, Any]:
    obs = provider.observer
    obs.flush()
    specs = {n: spec.slo for n, spec in provider.admin.specs().items()}
    return slo.report(specs, lambda start, end, model: obs.store.window(start, end, model, None), time.time())


@router.get("/v1/admin/findings")
async def get_findings(request: Request, refresh: str | None = None) -> Any:
    flag = (refresh or "false").lower()
    if flag not in ("true", "false", "1", "0"):
        return JSONResponse(
            status_code=400,
            content={
                "error": {
                    "message": f"refresh must be true or false, got {refresh!r}",
                    "type": "invalid_request_error",
                    "param": "refresh",
                    "code": "invalid_refresh",
                }
            },
        )
    return await run_in_threadpool(findings_body, request.app.state.provider, flag in ("true", "1"))


@router.get("/v1/admin/slo")
async def get_slo(request: Request) -> Any:
    return await run_in_threadpool(slo_body, request.app.state.provider)
