"""A real server started with an API key: the dashboard page and its assets load without it (they hold
no data), every data route needs it, and the page, given the key (URL fragment or login form), shows data."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser import CHROMIUM, launch
from tests.e2e.conftest import Served, serve

KEY = "e2e-dashboard-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def keyed(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("e2e-auth")
    config = {
        "home": str(base / "hfp-home"),
        "server": {"api_key": KEY},
        "models": [
            {
                "name": "cls",
                "source": str(tiny_models["bert-cls"]),
                "tasks": ["text-classification"],
                "device": "cpu",
            }
        ],
    }
    with serve(config, base) as served:
        yield served


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/dashboard", "text/html"),
        ("/dashboard/static/dashboard.js", "text/javascript"),
        ("/dashboard/static/dashboard.css", "text/css"),
    ],
)
def test_dashboard_page_and_assets_need_no_key(keyed: Served, path: str, content_type: str) -> None:
    r = httpx.get(f"{keyed.url}{path}", timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(content_type)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/admin/stats",
        "/v1/admin/series",
        "/v1/admin/models",
        "/v1/models",
        "/metrics",
        "/dashboard/static/../../v1/admin/stats",
        "/dashboard/static/x/../../../metrics",
        "/dashboard/static/",
    ],
)
def test_data_routes_need_the_key(keyed: Served, path: str) -> None:
    # http.client sends the path as written: httpx would resolve the dot segments before sending
    u = httpx.URL(keyed.url)
    conn = http.client.HTTPConnection(u.host, u.port, timeout=30)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    assert r.status == 401, body


def test_stats_with_and_without_the_key(keyed: Served) -> None:
    assert httpx.get(f"{keyed.url}/v1/admin/stats", timeout=30).status_code == 401
    wrong = httpx.get(f"{keyed.url}/v1/admin/stats", headers={"Authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 401
    r = httpx.get(f"{keyed.url}/v1/admin/stats", headers=AUTH, timeout=30)
    assert r.status_code == 200 and "requests" in r.json()


def _traffic(served: Served) -> None:
    with httpx.Client(base_url=served.url, headers=AUTH, timeout=60) as c:
        for _ in range(5):
            r = c.post("/v1/tasks/text-classification", json={"model": "cls", "inputs": "good"})
            assert r.status_code == 200, r.text


@pytest.fixture
def page(keyed: Served) -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: run scripts/install-browser.sh")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright Python package not installed")
    _traffic(keyed)
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        try:
            p = browser.new_page(viewport={"width": 1400, "height": 1100})
            errors: list[str] = []
            p.on("pageerror", lambda exc: errors.append(str(exc)))
            yield p
            assert not errors, errors
        finally:
            browser.close()


@pytest.mark.browser
def test_dashboard_with_key_in_fragment_shows_data_and_drops_the_fragment(keyed: Served, page) -> None:
    sent: list[str | None] = []
    page.on(
        "request", lambda req: sent.append(req.headers.get("authorization")) if "/v1/" in req.url else None
    )
    page.goto(f"{keyed.url}/dashboard#key={KEY}")
    page.wait_for_function("document.body.dataset.ready === '1'", timeout=30_000)
    page.wait_for_function("Number(document.getElementById('chart-throughput').dataset.points) > 0")
    assert int(page.inner_text("#tile-requests")) >= 5
    assert "cls" in page.inner_text("#chart-throughput")
    assert page.evaluate("location.hash") == "" and "key" not in page.url
    assert page.evaluate("sessionStorage.getItem('hfp-api-key')") == KEY
    assert page.evaluate("localStorage.length") == 0 and page.evaluate("document.cookie") == ""
    assert page.is_hidden("#login")
    assert sent and set(sent) == {f"Bearer {KEY}"}


@pytest.mark.browser
def test_dashboard_without_key_shows_the_login_form(keyed: Served, page) -> None:
    page.goto(f"{keyed.url}/dashboard")
    page.wait_for_selector("#login", state="visible", timeout=30_000)
    assert "needs an API key" in page.inner_text("#login-message")
    page.fill("#api-key", "wrong")
    page.click("#login button[type=submit]")
    page.wait_for_function("document.getElementById('login-message').textContent.includes('refused')")
    assert page.is_visible("#login")
    page.fill("#api-key", KEY)
    page.click("#login button[type=submit]")
    page.wait_for_function("document.body.dataset.ready === '1'", timeout=30_000)
    assert page.is_hidden("#login")
    assert page.evaluate("sessionStorage.getItem('hfp-api-key')") == KEY
    assert page.evaluate("localStorage.length") == 0 and page.evaluate("document.cookie") == ""
