"""create_app: the FastAPI application around one Provider."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hf_provider.errors import ProviderError
from hf_provider.lifecycle.history import ACTOR
from hf_provider.observability.quiet import quiet_third_party
from hf_provider.provider import Provider
from hf_provider.reporting.redact import install_log_redaction
from hf_provider.server.auth import BearerAuth
from hf_provider.server.errors import install_error_handlers
from hf_provider.server.fastpath import EmbeddingsFastPath
from hf_provider.server.loadshed import LagProbe, LoopLag, ShedOnLoopLag
from hf_provider.server.middleware import RequestIdAndLimits
from hf_provider.server.routes import (
    admin,
    audio,
    health,
    openai,
    pipelines,
    reports,
    rerank,
    responses,
    tasks,
    versions,
)

log = logging.getLogger(__name__)


def claim_process(provider: Provider) -> None:
    """The process-wide state a server sets and a Provider used as a library leaves to its host program: every
    log record masked before any handler sees it (secrets in messages and tracebacks), and the heap frozen
    after each load unless `[memory] freeze_heap = false` (its default None means on here). `hfp serve` and
    a Ray replica both come through create_app. Third-party progress bars and warnings are off unless
    `[server] log_level = "debug"`."""
    install_log_redaction()
    if provider.settings.server.log_level.lower() != "debug":
        quiet_third_party()
    provider.admin.freeze_heap(provider.settings.memory.freeze_heap is not False)


def create_app(provider: Provider, *, load_on_start: bool | None = None) -> FastAPI:
    settings = provider.settings
    claim_process(provider)
    load_now = settings.load_on_start if load_on_start is None else load_on_start

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.started = False
        # Process-wide, so set by the server only (an embedding application keeps its own choice).
        sys.setswitchinterval(settings.server.gil_switch_interval_ms / 1000.0)
        observer = provider.observer
        if observer is not None and hasattr(observer, "start"):
            observer.start()
        lag.start()
        if probe is not None:
            probe.start()
        loader = asyncio.create_task(_load_all(provider, app)) if load_now else None
        if loader is None:
            app.state.started = True
        try:
            yield
        finally:
            await lag.stop()
            if probe is not None:
                await probe.stop()
            if loader is not None:
                loader.cancel()
            await asyncio.to_thread(provider.close)
            if observer is not None and hasattr(observer, "close"):
                observer.close()

    app = FastAPI(title="hf-provider", version="0.1.0", lifespan=lifespan)
    lag = LoopLag(provider)
    probe = None if settings.server.lag_probe_ms is None else LagProbe(settings.server.lag_probe_ms / 1000)
    app.state.lag_probe = probe
    app.state.provider = provider
    app.state.loop_lag = lag
    app.state.load_on_start = load_now
    app.state.started = False
    admin.record_start(app)
    install_error_handlers(app)
    for r in (
        health.router,
        openai.router,
        audio.router,
        responses.router,
        tasks.router,
        pipelines.router,
        admin.router,
        versions.router,
        reports.router,
    ):
        app.include_router(r)
    app.include_router(rerank.router)  # /v1/rerank, /v2/rerank, /v1/score
    if probe is not None:
        from hf_provider.server.routes import looplag

        app.include_router(looplag.router)
    if provider.faults is not None:  # TESTING ONLY: the route exists only when fault injection is configured
        from hf_provider.server.routes import faults

        app.include_router(faults.router)
    if provider.observer is not None:
        from hf_provider.server.routes.observability import build_router

        app.include_router(build_router(lambda: provider.observer, provider.admin.describe))
        # SLOs, findings and the gauges read at scrape time (routes/monitoring.py)
        if hasattr(provider.observer, "scrape_hooks"):
            from hf_provider.server.routes import monitoring

            monitoring.install(app, provider)
    app.add_middleware(EmbeddingsFastPath, provider=provider)
    app.add_middleware(ShedOnLoopLag, monitor=lag, limit_s=settings.server.shed_loop_lag_s)
    if settings.server.api_key is not None:
        app.add_middleware(BearerAuth, api_key=settings.server.api_key.get_secret_value(), provider=provider)
    app.add_middleware(
        RequestIdAndLimits,
        max_body_bytes=settings.server.max_body_bytes,
        max_audio_bytes=settings.server.max_audio_bytes,
    )
    if provider.tracing is not None:  # outermost, so its span covers every layer; absent when tracing is off
        from hf_provider.server.tracing import TraceRequests

        app.add_middleware(TraceRequests, tracing=provider.tracing)
    return app


async def _load_all(provider: Provider, app: FastAPI) -> None:
    """Load configured models in the background so /healthz answers at once and /readyz tells when done."""
    sv = provider.supervisor
    ACTOR.set("start")  # this task's own context: its loads are recorded in the version history as "start"
    for d in provider.admin.describe():
        if d["keep_alive"] is not None and d["keep_alive"] == 0:
            continue  # scale-to-zero models load on their first request
        component = f"model-loading/{d['name']}"
        started = time.monotonic()
        try:
            await asyncio.to_thread(provider.admin.load, d["name"], force=False)
            # the banner (cli/banner.py) listed it as loading: each model's line says how that ended
            log.info("model %s ready (loaded in %.1fs)", d["name"], time.monotonic() - started)
        except ProviderError as e:
            log.error("model %s failed to load: %s", d["name"], e.message)
            provider.report(e, model=d["name"], phase="load")
            sv.mark_down(component, e.message)  # until a later load of it succeeds (manager clears it)
        except Exception as e:  # a bug, not a bad model: counted, and the other models still load
            sv.report(component, e)
    # a pipeline step's model that declares no tasks is checked once loaded (pipelines/plan.py checked the rest)
    ready = {d["name"]: d["tasks"] for d in provider.admin.describe() if d["state"] == "ready"}
    for pipeline, problem in provider.pipelines.check_served(ready.get):
        log.error("%s", problem)
        sv.mark_down(f"pipeline/{pipeline}", problem)
    app.state.started = True
