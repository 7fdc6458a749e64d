"""GET /v1/admin/server (which server this is) and the data the /dashboard page carries inline, on the app
`hfp serve` builds (factory.build; nothing loaded, no uvicorn): never for a server with an API key, never a
broken page when the data cannot be read."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hf_provider.server.auth import BearerAuth
from hf_provider.server.routes.observability import INITIAL_MARKER, build_router, inline_initial

KEY = "dashboard-server-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
INITIAL = re.compile(r'<script type="application/json" id="initial">(.*?)</script>', re.S)


def _client(home: Path, **server: object) -> Iterator[TestClient]:
    from hf_provider.server.factory import build
    from hf_provider.settings import load_settings

    settings = load_settings(
        {
            "home": str(home),
            "load_on_start": False,
            "server": {"host": "127.0.0.1", "port": 8123, **server},
            "models": [
                {"name": "cls", "source": str(home / "no-such-folder"), "tasks": ["text-classification"]}
            ],
        }
    )
    with TestClient(build(settings)) as c:  # runs the lifespan: the provider is closed at the end
        yield c


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    yield from _client(tmp_path_factory.mktemp("keyed"), api_key=KEY)


@pytest.fixture(scope="module")
def open_(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    yield from _client(tmp_path_factory.mktemp("open"))


def test_server_route_needs_the_key_when_one_is_set(keyed: TestClient) -> None:
    assert keyed.get("/v1/admin/server").status_code == 401
    assert keyed.get("/v1/admin/server", headers={"Authorization": "Bearer nope"}).status_code == 401
    r = keyed.get("/v1/admin/server", headers=AUTH)
    assert r.status_code == 200 and r.json()["port"] == 8123


@pytest.mark.parametrize("headers", [{}, AUTH])
def test_page_of_a_server_with_a_key_holds_no_data(keyed: TestClient, headers: dict) -> None:
    r = keyed.get("/dashboard", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'id="initial"' not in r.text and INITIAL_MARKER not in r.text
    assert "/dashboard/static/dashboard.js" in r.text


class _FailingObserver:
    """An observer whose history cannot be read: the queries (observability/queries.py) fail at its flush."""

    sample_interval_s = 5.0
    closed = False

    def flush(self) -> None:
        raise RuntimeError("history store unreadable")


@pytest.mark.parametrize("with_key", [False, True])
def test_page_behind_the_auth_middleware_holds_no_data(with_key: bool) -> None:
    # However the app was put together: the middleware alone keeps the data out of the open page.
    from hf_provider.observability.observer import Observer

    obs = Observer(home=None)
    app = FastAPI()
    app.include_router(build_router(lambda: obs, lambda: []))
    if with_key:
        app.add_middleware(BearerAuth, api_key=KEY)
    r = TestClient(app).get("/dashboard")
    obs.close()
    assert r.status_code == 200 and ('id="initial"' in r.text) is not with_key


def test_page_is_served_without_data_when_reading_it_fails(caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()
    app.include_router(build_router(lambda: _FailingObserver(), lambda: []))
    r = TestClient(app).get("/dashboard")
    assert r.status_code == 200 and 'id="initial"' not in r.text  # the page's first poll fetches it instead
    assert "history store unreadable" in caplog.text


def test_server_identity(open_: TestClient) -> None:
    before = time.time()
    s = open_.get("/v1/admin/server").json()
    assert set(s) == {"version", "host", "port", "pid", "started_at", "uptime_s", "home"}
    assert s["version"] == metadata.version("hf-provider")
    assert (s["host"], s["port"], s["pid"]) == ("127.0.0.1", 8123, os.getpid())
    assert s["started_at"] <= before and 0 <= s["uptime_s"] < 600
    assert abs((s["started_at"] + s["uptime_s"]) - before) < 60
    assert s["home"] is not None and Path(s["home"]).name == "127.0.0.1-8123"  # this server's history folder


def test_page_of_an_open_server_carries_the_first_poll(open_: TestClient) -> None:
    html = open_.get("/dashboard").text
    m = INITIAL.search(html)
    assert m is not None and INITIAL_MARKER not in html
    data = json.loads(m.group(1))
    assert data["window"] == 300
    assert {"series", "stats", "models", "model_stats", "server"} <= set(data)
    assert [d["name"] for d in data["models"]["models"]] == ["cls"]
    assert data["models"]["models"][0]["state"] == "unloaded"
    assert data["server"]["pid"] == os.getpid()
    assert data["stats"]["requests"] == 0 and data["model_stats"] == {}


@pytest.mark.parametrize("text", ["</script><script>alert(1)</script>", "<!--", "</SCRIPT >", "a\u2028b<"])
def test_inline_data_cannot_end_its_script_element(text: str) -> None:
    page = inline_initial(f"<body>{INITIAL_MARKER}<script src=x></script></body>", {"name": text})
    block = INITIAL.search(page)
    assert block is not None and "<" not in block.group(1)
    assert json.loads(block.group(1)) == {"name": text}
    assert page.endswith("<script src=x></script></body>")
