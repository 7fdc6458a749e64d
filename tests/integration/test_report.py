"""`hfp report`: the command against a live server (uvicorn on loopback), the HTML page it writes opened in headless
Chromium, and the screenshot read back: the charts are drawn (their line colours are on the image), the finding
and the SLO table are there, and no input text is anywhere in the page."""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.browser import ARTIFACTS, launch, needs_chromium, serve_app
from typer.testing import CliRunner

from hf_provider.cli.main import app as cli
from hf_provider.observability.report_page import line_chart, render
from hf_provider.server.factory import build
from hf_provider.settings import FaultRule, load_settings

SECRET = "Zebulon Quartermaine's account number"


@pytest.fixture(scope="module")
def server(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Any]]:
    config = {
        "home": str(tmp_path_factory.mktemp("report") / "home"),
        "server": {"port": 0},
        "faults": {"rules": []},  # TESTING ONLY: one failing forward pass below, for an error group
        "models": [
            {
                "name": "enc",
                "source": str(tiny_models["bert-cls"]),
                "tasks": ["embeddings"],
                "device": "cpu",
                "slo": {"p95_ms": 60, "error_rate": 0.01, "window": "1d"},
            }
        ],
    }
    app = build(load_settings(config))
    provider = app.state.provider
    obs, history = provider.observer, provider.lifecycle.history
    # Two hours of history: the first revision for 100 minutes, then one 40% slower (a finding).
    now = time.time()
    swap = now - 1200
    rng = random.Random(8)
    rows = [
        (swap - 6000 + i * 5, "enc", "embeddings", "ok", rng.lognormvariate(3.4, 0.3), 1, 6)
        for i in range(1200)
    ]
    rows += [
        (swap + i * 5, "enc", "embeddings", "ok", rng.lognormvariate(3.4, 0.3) * 1.4, 1, 6)
        for i in range(230)
    ]
    rows += [(swap + i * 60, "enc", "embeddings", "error", 12.0, 1, 6) for i in range(15)]
    obs.store.write(rows, [])
    obs.store.write([], [(now - 7000 + i * 60, "rss_bytes", "", 4e8 + i * 1e6) for i in range(115)])
    provider.manager.get("enc")  # loaded now (a real "load" event): the synthetic swap installed this commit
    commit = provider.manager.entry("enc").model.commit
    clock = history.clock
    history.clock = lambda: swap - 6000
    history.record("enc", "load", revision="main", commit="aaaaaaa0000", actor="start")
    history.clock = lambda: swap
    history.record("enc", "swap", revision="v2", commit=commit, actor="admin")
    history.clock = clock
    provider.faults.set([FaultRule(phase="forward", model="enc")])
    with pytest.raises(RuntimeError):
        provider.run("enc", "embeddings", [SECRET])  # reported: class, phase and a masked message, no input
    provider.faults.set([])
    with serve_app(app) as url:
        yield url, app
    obs.close()
    provider.close()


def test_report_refuses_a_bad_period(server: tuple[str, Any]) -> None:
    url, _ = server
    r = CliRunner().invoke(cli, ["report", "--url", url, "--since", "yesterday"])
    assert r.exit_code == 2 and "--since must be a duration" in r.output
    r = CliRunner().invoke(cli, ["report", "--url", url, "--since", "90d"])
    assert r.exit_code == 2 and "between 1s and 30d" in r.output


def test_report_text_names_the_finding_and_the_slo(server: tuple[str, Any]) -> None:
    url, _ = server
    with httpx.Client(base_url=url, timeout=120) as c:
        assert c.post("/v1/embeddings", json={"model": "enc", "input": "fine"}).status_code == 200
    r = CliRunner().invoke(cli, ["report", "--url", url, "--since", "2h"])
    assert r.exit_code == 0, r.output
    assert (
        "findings: 2" in r.output and "since the new revision went live" in r.output and "p95 +" in r.output
    )
    assert "SLO enc: breached" in r.output and "error groups: 1" in r.output
    assert "Zebulon" not in r.output


@needs_chromium[0]
@needs_chromium[1]
def test_report_html_in_chromium(server: tuple[str, Any], tmp_path: Path) -> None:
    url, _ = server
    runner = CliRunner()
    page_file = tmp_path / "report.html"
    r = runner.invoke(cli, ["report", "--url", url, "--since", "2h", "--html", str(page_file)])
    assert r.exit_code == 0, r.output
    html = page_file.read_text()
    assert "Zebulon" not in html
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright Python package not installed")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(page_file.as_uri())
            assert page.inner_text("h1") == "hf-provider report"
            assert "p95 +" in page.inner_text(".finding")
            assert page.locator("svg").count() == 4
            assert page.locator("svg polyline").count() >= 4  # throughput, three latency lines, memory
            slo = page.inner_text("table.slo")
            assert "enc" in slo and "breached" in slo
            assert "enc" in page.inner_text("table.models")
            assert "forward" in page.inner_text("table.errors")
            page.screenshot(path=str(shot), full_page=True)
            # Read the screenshot back through a canvas: the charts' line colours and the finding's border are
            # on the image, not only in the DOM.
            counts = page.evaluate(
                """async (src) => {
                    const img = new Image(); img.src = src; await img.decode();
                    const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
                    const g = c.getContext('2d'); g.drawImage(img, 0, 0);
                    const d = g.getImageData(0, 0, c.width, c.height).data;
                    const near = (i, r, gg, b) => Math.abs(d[i]-r) + Math.abs(d[i+1]-gg) + Math.abs(d[i+2]-b) < 60;
                    let blue = 0, red = 0, amber = 0, white = 0;
                    for (let i = 0; i < d.length; i += 4) {
                        if (near(i, 0x25, 0x63, 0xeb)) blue++;
                        else if (near(i, 0xdc, 0x26, 0x26)) red++;
                        else if (near(i, 0xd9, 0x77, 0x06)) amber++;
                        else if (d[i] > 245 && d[i+1] > 245 && d[i+2] > 245) white++;
                    }
                    return {blue, red, amber, white, total: d.length / 4};
                }""",
                "data:image/png;base64," + base64.b64encode(shot.read_bytes()).decode(),
            )
        finally:
            browser.close()
    assert counts["blue"] > 300, counts  # first series of each chart but latency
    assert counts["red"] > 100, counts  # second series (system memory) and the breached status
    assert counts["amber"] > 100, counts  # the finding's border, the third series
    assert counts["white"] < counts["total"] * 0.95, counts  # not a blank page


def test_a_chart_breaks_its_line_at_gaps_and_escapes_names() -> None:
    svg = line_chart("<t>", [0, 1, 2, 3, 4], {"a<b": [1, 2, None, 3, 4], "c": [None] * 5}, str)
    assert svg.count("<polyline") == 2 and "a&lt;b" in svg and "&lt;t&gt;" in svg
    empty = render({"server": "x", "since_s": 60, "stats": {}, "series": {}})
    assert "No history in this period" in empty and "No findings" in empty


@needs_chromium[0]
@needs_chromium[1]
def test_dashboard_shows_the_findings_above_the_panels(server: tuple[str, Any]) -> None:
    url, _ = server
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright Python package not installed")
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{url}/dashboard")
            page.wait_for_selector("#findings .finding", state="visible", timeout=30_000)
            kinds = page.eval_on_selector_all("#findings .finding", "els => els.map(e => e.dataset.kind)")
            assert sorted(kinds) == ["error_rate", "latency"]
            assert "p95 +" in page.inner_text("#findings")
            assert not errors, errors
        finally:
            browser.close()
