"""`hfp serve --ray`: start a local Ray (or join one at an address), put Ray's HTTP proxy on the server's
host and port, deploy the application, serve until a signal, then take it down."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray
from ray import serve

from hf_provider.scaling.config import APP_NAME
from hf_provider.scaling.options import push_interval_env
from hf_provider.scaling.ray_serve import application, shutdown_directory
from hf_provider.settings import Settings

log = logging.getLogger(__name__)


def start_ray(settings: Settings, address: str | None) -> bool:
    """Connect to Ray at `address`, else start a local instance. True when this process started it (and so
    stops it). The metric push intervals must be in the environment before Ray starts its processes, which
    inherit it; a cluster's own processes need them set there."""
    for k, v in push_interval_env(settings).items():
        os.environ.setdefault(k, v)
    if address is not None:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        return False
    ray.init(
        num_cpus=settings.ray.cluster_cpus,
        include_dashboard=settings.ray.dashboard,
        ignore_reinit_error=True,
        log_to_driver=False,
    )
    return True


@contextmanager
def deployed(settings: Settings, address: str | None = None, name: str = APP_NAME) -> Iterator[str]:
    """The application running on Ray behind its proxy at [server] host:port; yields the proxy's URL. On
    exit the application is deleted, and Ray stopped if this process started it."""
    started = start_ray(settings, address)
    try:
        http: dict[str, Any] = {
            "host": settings.server.host,
            "port": settings.server.port,
            "keep_alive_timeout_s": settings.server.keep_alive_s,
        }
        serve.start(http_options=http, proxy_location="HeadOnly")
        serve.run(application(settings), name=name, route_prefix="/", blocking=False)
        host = "127.0.0.1" if settings.server.host in ("0.0.0.0", "::", "") else settings.server.host
        yield f"http://{host}:{settings.server.port}"
    finally:
        try:
            serve.delete(name)
            shutdown_directory(name)
            if started:
                serve.shutdown()
        finally:
            if started:
                ray.shutdown()


def serve_forever(settings: Settings, address: str | None = None) -> None:
    """Run until SIGINT or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with deployed(settings, address) as url:
        print(f"hf-provider on Ray Serve at {url} (deployment status: `serve status`)", flush=True)
        stop.wait()
