"""Observability routes: /metrics, /v1/admin/{profile,stats,series}, /dashboard and its static assets."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from hf_provider.dashboard import STATIC_DIR
from hf_provider.observability import queries
from hf_provider.observability.observer import Observer
from hf_provider.observability.queries import MAX_WINDOW_S
from hf_provider.server.auth import BearerAuth
from hf_provider.server.routes import admin

log = logging.getLogger(__name__)

DASHBOARD_WINDOW_S = 300.0  # the page's default window: the data inlined into it covers this one
INITIAL_MARKER = "<!--hfp:initial-data-->"
NOT_OK = ("errors", "client_errors", "timed_out", "rejected", "cancelled")

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
        return model in names or model in queries.known_models(observer_getter())

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = observer_getter().render_metrics()
        return Response(content=body, media_type=content_type)

    @router.get("/v1/admin/profile")
    def profile(model: str | None = Query(default=None)) -> Any:
        obs = observer_getter()
        if model is None:
            names = sorted(
                {m["name"] for m in models_getter() if "name" in m} | set(queries.known_models(obs))
            )
            return {"models": {name: queries.profile(obs, name) for name in names}}
        if not known(model):
            available = ", ".join(sorted(m["name"] for m in models_getter() if "name" in m)) or "none"
            return _error(
                404,
                f"Unknown model {model!r}. Available models: {available}.",
                code="model_not_found",
                param="model",
            )
        return queries.profile(obs, model)

    @router.get("/v1/admin/stats")
    async def stats(model: str | None = None, task: str | None = None, window: str | None = None) -> Any:
        try:
            w = _window(window)
        except ValueError as exc:
            return _error(400, str(exc), code="invalid_window", param="window")
        # SQLite reads off the event loop.
        obs = observer_getter()
        out = await run_in_threadpool(queries.stats, obs, model or None, task or None, w)
        if not model and not task:  # per pipeline and step (observability/pipelines.py), beside the models'
            out["pipelines"] = obs.pipelines.window(w)
        return out

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
            return await run_in_threadpool(queries.series, observer_getter(), w, s, model or None)
        except ValueError as exc:
            return _error(400, str(exc), code="invalid_step", param="step")

    def initial_data(request: Request) -> dict[str, Any]:
        """What the page's first poll would fetch for its default window, so its first paint shows data."""
        obs = observer_getter()
        w = DASHBOARD_WINDOW_S
        series = queries.series(obs, w, None, None)
        stats = queries.stats(obs, None, None, w)
        provider = getattr(request.app.state, "provider", None)
        models = admin.models_body(provider) if provider is not None else {"models": models_getter()}
        names = sorted({m["name"] for m in models["models"] if "name" in m} | set(series["models"]))
        per_model = (
            {n: queries.stats(obs, n, None, w) for n in names} if any(stats[k] for k in NOT_OK) else {}
        )
        return {
            "window": w,
            "series": series,
            "stats": stats,
            "models": models,
            "model_stats": per_model,
            "server": admin.server_info(request) if provider is not None else None,
            # the error groups of the window (redacted reports), as GET /v1/admin/errors would answer
            "groups": provider.errors(since=time.time() - w) if provider is not None else None,
            # the findings the monitor last raised (routes/monitoring.py), as GET /v1/admin/findings lists them
            "findings": obs.monitor.latest() if getattr(obs, "monitor", None) is not None else None,
        }

    @router.get("/dashboard", include_in_schema=False)
    async def dashboard(request: Request) -> Response:
        html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        data = None
        if not _behind_api_key(request):  # the page is open: with a key it holds no data, it asks for the key
            try:
                data = await run_in_threadpool(initial_data, request)
            except Exception:  # the page still works: its first poll fetches the same data
                log.exception("dashboard: building the inline data failed")
        return HTMLResponse(inline_initial(html, data), headers={"Cache-Control": "no-cache"})

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


def _behind_api_key(request: Request) -> bool:
    """True when this app checks an API key (configured, or the middleware installed by any other path)."""
    provider = getattr(request.app.state, "provider", None)
    if provider is not None and provider.settings.server.api_key is not None:
        return True
    return any(m.cls is BearerAuth for m in getattr(request.app, "user_middleware", ()))


def inline_initial(html: str, data: dict[str, Any] | None) -> str:
    """The page with `data` as a JSON script block in place of the marker (or just without the marker).
    "<" is written as \\u003c, so no string in the data (a model name, an error message) can close the
    script element or open a comment: JSON.parse reads it back unchanged."""
    if data is None:
        return html.replace(INITIAL_MARKER, "")
    text = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY).decode().replace("<", "\\u003c")
    return html.replace(INITIAL_MARKER, f'<script type="application/json" id="initial">{text}</script>')
