"""What `hfp serve` says first: version, address, models with their state, dashboard URL, whether a key is needed.

The models are listed as the server starts them (loading, or on first request); the server logs each one's
outcome (`model X ready`, `model X failed to load: ...`) through the log configuration given to uvicorn here.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from hf_provider.cli.common import _ANY_ADDRESS, _url_of

if TYPE_CHECKING:
    from hf_provider.settings import Settings


def banner_lines(settings: Settings) -> list[str]:
    from hf_provider import __version__

    server, url = settings.server, _url_of(settings)
    where = url
    if server.host in _ANY_ADDRESS:  # reachable from other machines too; the URL is the local way in
        where += f" (listening on every interface, {server.host or '0.0.0.0'}:{server.port})"
    if server.api_key is not None:
        key = "required (Authorization: Bearer <key>; the dashboard page opens without one)"
    else:
        key = "not required (set HFP_SERVER__API_KEY to require one)"
    lines = [
        f"hf-provider {__version__} serving on {where}",
        f"  dashboard: {url}/dashboard",
        f"  API key:   {key}",
        f"  models ({len(settings.models)}):",
    ]
    width = max((len(s.name) for s in settings.models), default=0)
    for spec in settings.models:
        on_start = settings.load_on_start and spec.keep_alive != 0  # as server/app.py's _load_all decides
        state = "loading" if on_start else "loads on first request"
        tasks = ", ".join(spec.tasks) or "all supported tasks"
        lines.append(f"    {spec.name:<{width}}  {state}  ({tasks})")
    return lines


def print_banner(settings: Settings) -> None:
    from rich.console import Console

    # stderr, as uvicorn's own lines, so the two keep their order; soft_wrap: long paths are not cut
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    for line in banner_lines(settings):
        console.print(line, markup=False)


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging configuration, with hf_provider's loggers (the models' ready / failed lines) added in
    uvicorn's format. Applied by uvicorn.run, so only a serving process has it."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    our_level = "DEBUG" if level.lower() == "trace" else level.upper()  # logging has no TRACE
    config["loggers"]["hf_provider"] = {"handlers": ["default"], "level": our_level, "propagate": False}
    return config
