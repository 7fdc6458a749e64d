"""Build the served application from settings: observer + provider + app. Used by `hfp serve` and tests."""

from __future__ import annotations

from fastapi import FastAPI

from hf_provider.provider import Provider
from hf_provider.settings import Settings


def make_observer(settings: Settings):
    from hf_provider.observability.observer import Observer

    return Observer(
        home=settings.home if settings.history_enabled else None,
        metrics_enabled=settings.metrics_enabled,
        raw_retention_s=settings.raw_retention,
        rollup_retention_s=settings.rollup_retention,
    )


def build(settings: Settings) -> FastAPI:
    from hf_provider.server.app import create_app

    observer = make_observer(settings)
    provider = Provider(settings=settings, observer=observer, allow_adhoc=False)
    observer.model_bytes = provider.manager.model_bytes
    observer.in_flight_source = provider.manager.in_flight_by_model
    return create_app(provider)
