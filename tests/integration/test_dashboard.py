"""The dashboard in headless Chromium against a real uvicorn server fed synthetic traffic.

Needs Debian's chromium at /usr/bin/chromium (scripts/install-browser.sh) and the playwright Python package;
the browser is launched from that path, so `playwright install` is never needed.
Saves artifacts/dashboard.png.
"""

from __future__ import annotations

import io
import math
import random
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from tests.browser import ARTIFACTS, launch, needs_chromium

CHARTS = ("chart-throughput", "chart-latency", "chart-queue", "chart-memory", "chart-cpu", "chart-rss")

pytestmark = needs_chromium


class Clock:
    def __init__(self) -> None:
        self.fixed: float | None = None

    def __call__(self) -> float:
        return time.time() if self.fixed is None else self.fixed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _synthetic_history(obs, clock: Clock, seconds: int = 280) -> None:
    """Five minutes of traffic for two models, timestamped in the past through the injected clock: about 3% server
    errors and 10% client errors (4xx)."""
    rng = random.Random(3)
    now = time.time()
    for k in range(seconds, 0, -1):
        clock.fixed = now - k
        for model, base, rate in (("minilm", 4.0, 12), ("tiny-t5", 25.0, 3)):
            wave = 1 + 0.5 * math.sin(k / 30)
            for _ in range(max(1, int(rate * wave))):
                r = rng.random()
                ok = r > 0.13
                obs.request_done(
                    model,
                    "embed" if model == "minilm" else "text2text",
                    "main",
                    "ok" if ok else "error" if r < 0.03 else "client_error",
                    rng.lognormvariate(math.log(base), 0.4) / 1000,
                    1,
                    16,
                    None if ok else "InvalidInput",
                )
            obs.batch_done(model, "embed", 4, 64, 0.001, 0.0006, base / 1000, 0.0003, peak_bytes=2_000_000)
            obs.queue_depth(model, int(3 * wave + rng.random() * 2))
        if k % 5 == 0:
            obs.sample()
    clock.fixed = None


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    import uvicorn
    from fastapi import FastAPI

    from hf_provider.observability.observer import Observer
    from hf_provider.server.routes.observability import build_router

    clock = Clock()
    sizes = {
        "minilm": {"weight_bytes": 90_000_000, "accounted_bytes": 120_000_000},
        "tiny-t5": {"weight_bytes": 4_000_000, "accounted_bytes": 6_000_000},
    }
    obs = Observer(home=None, clock=clock, sample_interval_s=5.0, model_bytes=lambda: sizes)
    obs.model_loaded("minilm", "main", 1.2, 90_000_000)
    obs.model_loaded("tiny-t5", "main", 0.4, 4_000_000)
    _synthetic_history(obs, clock)
    obs.start()
    app = FastAPI()
    app.include_router(build_router(lambda: obs, lambda: [{"name": "minilm"}, {"name": "tiny-t5"}]))
    port = _free_port()
    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    stop = threading.Event()

    def live_traffic() -> None:  # keeps the newest buckets filling while the page polls
        while not stop.wait(0.05):
            obs.request_done("minilm", "embed", "main", "ok", random.uniform(0.003, 0.006), 1, 16)

    feeder = threading.Thread(target=live_traffic, daemon=True)
    feeder.start()
    yield f"http://127.0.0.1:{port}"
    stop.set()
    feeder.join()
    srv.should_exit = True
    thread.join(timeout=10)
    obs.close()


def test_dashboard_draws_charts_with_data(server: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright Python package not installed")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{server}/dashboard")
            page.wait_for_function(
                "ids => ids.every(id => Number(document.getElementById(id).dataset.points) > 0)",
                arg=list(CHARTS),
                timeout=30_000,
            )
            points = {c: int(page.get_attribute(f"#{c}", "data-points") or 0) for c in CHARTS}
            assert all(v > 0 for v in points.values()), points
            assert points["chart-throughput"] > 40  # ~5 minutes of history at 5 s steps, two models
            assert page.get_attribute("#chart-gpu-memory", "hidden") is not None  # no GPU here: no GPU chart
            assert "minilm" in page.inner_text("#chart-throughput")
            assert page.inner_text("#tile-requests") not in ("", "–", "0")
            # The headline counts server failures only; the 4xx share, three times as large here, is beside it.
            server_err, client_err = (page.inner_text(f"#{t}") for t in ("tile-errors", "tile-client-errors"))
            assert server_err.endswith("%") and client_err.endswith("%"), (server_err, client_err)
            assert 0 < float(server_err[:-1]) < float(client_err[:-1]), (server_err, client_err)
            assert "Client errors (4xx)" in page.inner_text("#tiles")
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            # Switching the window re-polls and redraws from the minute rollups.
            page.select_option("#window", "3600")
            page.wait_for_function(
                "() => document.getElementById('chart-throughput').dataset.points !== "
                f"'{points['chart-throughput']}'",
                timeout=15_000,
            )
            assert int(page.get_attribute("#chart-throughput", "data-points") or 0) > 0
            assert not errors, errors
        finally:
            browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def test_top_once_against_the_live_server(server: str) -> None:
    from rich.console import Console

    from hf_provider.cli.top import top

    out = io.StringIO()
    top(url=server, once=True, console=Console(file=out, width=140))
    text = out.getvalue()
    assert "minilm" in text and "tiny-t5" in text and "CPU" in text
