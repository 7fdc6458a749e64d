"""The dashboard's first paint and its legends, in headless Chromium against a bare observability app with
twelve models (one of them named to break out of a <script> element).

The page carries its first data inline: with every /v1/admin request held unanswered, it still shows numbers
as soon as it has loaded. Legends never repeat a colour: the biggest six models and one "other" line.
Saves artifacts/dashboard-first-paint.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from tests.browser import ARTIFACTS, launch, needs_chromium, serve_app

pytestmark = needs_chromium

EVIL = "</script><script>window.pwned=1</script><!--"
# Twelve models, biggest first: model-00 holds the most memory and serves the most requests.
MODELS = [f"model-{i:02d}" for i in range(11)] + [EVIL]
SIZES = {
    name: {"weight_bytes": (100 - 7 * i) * 2**20, "accounted_bytes": (120 - 7 * i) * 2**20}
    for i, name in enumerate(MODELS)
}
LEGEND_COLORS = "els => els.map(e => getComputedStyle(e.querySelector('i')).backgroundColor)"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    from fastapi import FastAPI

    from hf_provider.observability.observer import Observer
    from hf_provider.server.routes.observability import build_router

    obs = Observer(home=None, model_bytes=lambda: SIZES)
    for i, name in enumerate(MODELS):
        for _ in range(24 - 2 * i):
            obs.request_done(name, "embed", "main", "ok", 0.004, 1, 8)
        obs.queue_depth(name, 12 - i)
    obs.sample()
    app = FastAPI()
    app.include_router(build_router(lambda: obs, lambda: [{"name": n, "state": "ready"} for n in MODELS]))
    with serve_app(app) as base:
        yield base
    obs.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright Python package not installed")
    with sync_api.sync_playwright() as pw:
        b = launch(pw)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    context.close()
    assert not errors, errors


def test_a_model_name_cannot_close_the_inline_script(url: str, page) -> None:
    html = httpx.get(f"{url}/dashboard", timeout=30).text
    block = re.search(r'<script type="application/json" id="initial">(.*?)</script>', html, re.S)
    assert block is not None
    assert "<" not in block.group(1) and "\\u003c/script>" in block.group(1)
    page.goto(f"{url}/dashboard")
    assert page.evaluate("window.pwned") is None
    names = page.eval_on_selector_all("#models tbody tr:not(.note)", "rows => rows.map(r => r.dataset.model)")
    assert EVIL in names and len(names) == len(MODELS)


def test_first_paint_shows_data_with_every_request_held(url: str, page) -> None:
    held: list = []
    page.route("**/v1/admin/**", lambda route: held.append(route))  # never answered: all shown came inline
    page.goto(f"{url}/dashboard", wait_until="load")
    assert "loading" not in page.inner_text("body").lower()
    assert int(page.inner_text("#tile-requests")) == sum(24 - 2 * i for i in range(len(MODELS)))
    for chart in ("chart-throughput", "chart-memory", "chart-queue"):
        assert int(page.get_attribute(f"#{chart}", "data-points") or 0) > 0, chart
    assert page.inner_text("#status").startswith("as of")
    assert page.inner_text("#errors") == "no errors in this window"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-first-paint.png"), full_page=True)
    for route in held:
        route.abort()


def test_legends_have_at_most_seven_models_in_distinct_colours(url: str, page) -> None:
    page.goto(f"{url}/dashboard")
    colour_of: dict[str, str] = {}
    for chart in ("chart-memory", "chart-queue", "chart-throughput"):
        entries = page.eval_on_selector_all(f"#{chart} .legend span", "els => els.map(e => e.textContent)")
        colors = page.eval_on_selector_all(f"#{chart} .legend span", LEGEND_COLORS)
        assert len(set(colors)) == len(colors), (chart, dict(zip(entries, colors, strict=True)))
        models = [e for e in entries if e != "total"]  # the throughput chart's sum of every model
        assert len(models) == 7, (chart, entries)
        # The six biggest by memory held, biggest first, and the other six summed in one line.
        assert models == [*MODELS[:6], "other (6 models)"], (chart, entries)
        for entry, color in zip(entries, colors, strict=True):
            assert colour_of.setdefault(entry, color) == color, (chart, entry)  # a model keeps its colour
