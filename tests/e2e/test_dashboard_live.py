"""The dashboard on the real server (real models, real Observer) after real requests, in headless Chromium."""

from __future__ import annotations

import httpx
import pytest

from tests.browser import ARTIFACTS, launch, needs_chromium

pytestmark = needs_chromium


def test_dashboard_shows_real_traffic(url: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright Python package not installed")
    with httpx.Client(base_url=url, timeout=60) as c:
        for i in range(30):
            assert (
                c.post("/v1/embeddings", json={"model": "minilm", "input": f"sentence {i}"}).status_code
                == 200
            )
            assert (
                c.post("/v1/tasks/text-classification", json={"model": "cls", "inputs": "good"}).status_code
                == 200
            )
        stats = c.get("/v1/admin/stats", params={"model": "minilm", "window": 300}).json()
        assert stats["requests"] >= 30 and stats["latency_ms"]["p50"] > 0
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{url}/dashboard")
            charts = ["chart-throughput", "chart-latency"]
            page.wait_for_function(
                "ids => ids.every(id => Number(document.getElementById(id).dataset.points) > 0)",
                arg=charts,
                timeout=30_000,
            )
            assert "minilm" in page.inner_text("#chart-throughput")
            states = page.eval_on_selector_all(
                "#models tbody tr:not(.note)",
                "rows => Object.fromEntries(rows.map(r => [r.dataset.model, r.dataset.state]))",
            )
            assert states["minilm"] == "ready" and states["cls"] == "ready", states
            assert page.inner_text('#models tr[data-model="minilm"]:not(.note) td.weights') not in ("", "–")
            assert page.inner_text("#errors") == "no errors in this window"
            assert "pid" in page.inner_text("#server")
            page.screenshot(path=str(ARTIFACTS / "dashboard-live.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
