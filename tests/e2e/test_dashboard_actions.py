"""The dashboard's models table, errors panel and header on the real server, in headless Chromium: the buttons
call /v1/admin/models/{name}/load|unload|pin|unpin and the table follows; a load that fails shows the server's
message in the model's row and in the errors panel; non-ok outcomes are counted per model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import httpx
import pytest

from tests.browser import launch, needs_chromium
from tests.e2e.conftest import Served, serve

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def served(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("dashboard-actions")
    broken = base / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    cls = {"source": str(tiny_models["bert-cls"]), "tasks": ["text-classification"], "device": "cpu"}
    config = {
        "home": str(base / "hfp-home"),
        "history_enabled": False,
        "load_on_start": False,
        "memory": {"min_residency_s": 0},
        "models": [{"name": "cls", **cls}, {"name": "broken", **cls, "source": str(broken)}],
    }
    with serve(config, base) as s:
        yield s


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
def page(browser, served: Served) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.goto(f"{served.url}/dashboard")
    yield p
    context.close()
    assert not errors, errors


def row(name: str) -> str:
    return f'#models tr[data-model="{name}"]:not(.note)'


def button(name: str, action: str) -> str:
    return f'{row(name)} button[data-action="{action}"]'


def _model(served: Served, name: str) -> dict:
    models = httpx.get(f"{served.url}/v1/admin/models", timeout=30).json()["models"]
    return next(m for m in models if m["name"] == name)


def test_a_failing_load_shows_the_servers_message(served: Served, page) -> None:
    page.click(button("broken", "load"))
    note = page.wait_for_selector('#models tr.note.error[data-model="broken"]', timeout=60_000)
    text = note.inner_text()
    assert text.startswith("load failed: cannot load model 'broken'") and "HTTP 500" in text
    assert page.get_attribute(row("broken"), "data-state") == "failed"
    assert page.inner_text(f"{row('broken')} td.state") == "failed"
    # The errors panel names it with the same message (from the model list, on the next poll).
    cell = page.wait_for_selector('#errors tr[data-model="broken"] td.load-error', timeout=30_000)
    assert cell.inner_text().startswith("cannot load model 'broken'")


def test_load_unload_pin_and_unpin_from_the_table(served: Served, page) -> None:
    page.click(button("cls", "load"))
    page.wait_for_selector(f'{row("cls")}[data-state="ready"]', timeout=60_000)
    assert page.inner_text(f"{row('cls')} td.weights") not in ("", "–")
    assert page.is_disabled(button("cls", "load"))
    page.click(button("cls", "unload"))
    page.wait_for_selector(f'{row("cls")}[data-state="unloaded"]', timeout=60_000)
    assert _model(served, "cls")["state"] == "unloaded"
    page.click(button("cls", "pin"))
    page.wait_for_selector(f'{row("cls")}[data-pinned="true"]', timeout=30_000)
    assert _model(served, "cls")["pinned"] is True
    assert page.inner_text(button("cls", "unpin")) == "Unpin"
    page.click(button("cls", "unpin"))
    page.wait_for_selector(f'{row("cls")}[data-pinned="false"]', timeout=30_000)
    assert _model(served, "cls")["pinned"] is False
    assert not page.query_selector('#models tr.note.error[data-model="cls"]')


def test_errors_panel_counts_non_ok_outcomes_per_model(served: Served, page) -> None:
    stats = httpx.get(f"{served.url}/v1/admin/stats", params={"model": "cls"}, timeout=30).json()
    bad = httpx.post(
        f"{served.url}/v1/tasks/text-classification",
        json={"model": "cls", "inputs": "x", "parameters": {"nope": 1}},
        timeout=60,
    )
    assert bad.status_code == 400
    expected = str(stats["client_errors"] + 1)
    # The page polls: the count shows up without a reload.
    page.wait_for_function(
        "n => (document.querySelector('#errors tr[data-model=\"cls\"] td.client_errors') || {}).textContent === n",
        arg=expected,
        timeout=30_000,
    )
    page.reload()  # and it is in the page's own data from the start
    assert page.inner_text('#errors tr[data-model="cls"] td.client_errors') == expected


def test_header_names_the_server(served: Served, page) -> None:
    cfg = served.settings.server
    text = page.inner_text("#server")
    assert text.startswith(f"{cfg.host}:{cfg.port} · v{metadata.version('hf-provider')} · up ")
    assert text.endswith(f" · pid {os.getpid()}")


def test_error_groups_show_the_reports_of_the_window(served: Served, page) -> None:
    for i in range(3):  # three messages that differ only by a number: one group of three
        bad = httpx.post(
            f"{served.url}/v1/tasks/text-classification",
            json={"model": "cls", "inputs": "x", "parameters": {f"nope{i}": 1}},
            timeout=60,
        )
        assert bad.status_code == 400
    groups = httpx.get(f"{served.url}/v1/admin/errors", params={"model": "cls"}, timeout=30).json()["groups"]
    group = next(g for g in groups if g["error_class"] == "bad_request" and g["count"] >= 3)
    sel = f'#error-groups tr[data-fingerprint="{group["fingerprint"]}"]'
    page.wait_for_function(
        "([sel, n]) => (document.querySelector(sel + ' td.count') || {}).textContent === n",
        arg=[sel, str(group["count"])],
        timeout=30_000,
    )
    cells = page.eval_on_selector_all(f"{sel} td", "tds => tds.map(td => td.textContent)")
    assert cells[:3] == ["bad_request", "cls", group["phase"] or "–"]
    assert cells[4].endswith(" ago") and cells[5] == group["message"]
    page.reload()  # in the page's own data from the start
    assert page.inner_text(f"{sel} td.count") == str(group["count"])
