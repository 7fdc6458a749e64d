"""Observability routes: /metrics, /v1/admin/{profile,stats,series}, /dashboard and its static assets."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response

from hf_provider.dashboard import STATIC_DIR
from hf_provider.observability.observer import MAX_WINDOW_S, Observer

_ASSET_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}


def _error(
    status: int, message: str, *, code: str, param: str | None = None, type_: str = "invalid_request_error"
) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"error": {"message": message, "type": type_, "param": param, "code": code}},
    )


def _seconds(raw: str | None, param: str, default: float | None) -> float | None:
    """Parse a seconds parameter; ValueError says what is wrong."""
    if raw is None or raw == "":
        return default
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"{param} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{param} must be a finite number of seconds, got {raw!r}")
    return v


def _window(raw: str | None) -> float:
    w = _seconds(raw, "window", 300.0)
    assert w is not None
    if w < 1 or w > MAX_WINDOW_S:
        raise ValueError(f"window must be between 1 and {int(MAX_WINDOW_S)} seconds (30 days), got {raw!r}")
    return w


def build_router(
    observer_getter: Callable[[], Observer], models_getter: Callable[[], list[dict[str, Any]]]
) -> APIRouter:
    router = APIRouter()

    def known(model: str) -> bool:
        names = {m.get("name") for m in models_getter()}
        return model in names or model in observer_getter().known_models()

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = observer_getter().render_metrics()
        return Response(content=body, media_type=content_type)

    @router.get("/v1/admin/profile")
    def profile(model: str | None = Query(default=None)) -> Any:
        obs = observer_getter()
        if model is None:
            names = sorted({m["name"] for m in models_getter() if "name" in m} | set(obs.known_models()))
            return {"models": {name: obs.profile(name) for name in names}}
        if not known(model):
            available = ", ".join(sorted(m["name"] for m in models_getter() if "name" in m)) or "none"
            return _error(
                404,
                f"Unknown model {model!r}. Available models: {available}.",
                code="model_not_found",
                param="model",
            )
        return obs.profile(model)

    @router.get("/v1/admin/stats")
    async def stats(model: str | None = None, task: str | None = None, window: str | None = None) -> Any:
        try:
            w = _window(window)
        except ValueError as exc:
            return _error(400, str(exc), code="invalid_window", param="window")
        # SQLite reads off the event loop.
        return await run_in_threadpool(observer_getter().stats, model or None, task or None, w)

    @router.get("/v1/admin/series")
    async def series(window: str | None = None, step: str | None = None, model: str | None = None) -> Any:
        try:
            w = _window(window)
            s = _seconds(step, "step", None)
            if s is not None and s <= 0:
                raise ValueError(f"step must be positive, got {step!r}")
        except ValueError as exc:
            return _error(400, str(exc), code="invalid_window", param="window")
        try:
            return await run_in_threadpool(observer_getter().series, w, s, model or None)
        except ValueError as exc:
            return _error(400, str(exc), code="invalid_step", param="step")

    @router.get("/dashboard", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html", media_type=_ASSET_TYPES[".html"], headers={"Cache-Control": "no-cache"}
        )

    @router.get("/dashboard/static/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        # Only plain file names straight inside static/: no separators, no dot-files, so no traversal.
        path = STATIC_DIR / name
        if "/" in name or "\\" in name or name.startswith(".") or not path.is_file():
            return _error(404, f"No dashboard asset {name!r}.", code="not_found", type_="not_found_error")
        return FileResponse(
            path,
            media_type=_ASSET_TYPES.get(path.suffix, "application/octet-stream"),
            headers={"Cache-Control": "no-cache"},
        )

    return router
