"""Versions over HTTP and from the CLI: the real server (factory.build, history in its home) under uvicorn, its
model served from the local Hub; swap, rollback, canary, x-hfp-revision, history, and `hfp models ...`."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from hf_provider.cli.main import app as cli
from hf_provider.testing.hub_server import LocalHub, use_local_hub

TASK = "text-classification"


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]
) -> Iterator[dict[str, Any]]:
    import uvicorn

    from hf_provider.server.factory import build
    from hf_provider.settings import load_settings

    base = tmp_path_factory.mktemp("versions-http")
    with LocalHub() as hub, pytest.MonkeyPatch.context() as mp:
        use_local_hub(mp, hub, base / "hf-home")
        v1 = hub.add_commit("org/cls", tiny_models["bert-cls"], tag="v1")
        v2 = hub.add_commit("org/cls", {"README.md": b"second revision"}, tag="v2")
        config = {
            "home": str(base / "hfp-home"),
            "models": [
                {"name": "cls", "source": "org/cls", "revision": "v1", "tasks": [TASK], "device": "cpu"}
            ],
        }
        app = build(load_settings(config))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
        thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        try:
            _wait(url)
            yield {"url": url, "v1": v1, "v2": v2, "hub": hub, "hf_home": base / "hf-home"}
        finally:
            srv.should_exit = True
            thread.join(30)
            sock.close()


def _wait(url: str) -> None:
    end = time.monotonic() + 120
    while time.monotonic() < end:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError("server not ready")


@pytest.fixture(autouse=True)
def online(served: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's autouse fixture sets the Hub offline for each test; this server's model lives on the Hub."""
    use_local_hub(monkeypatch, served["hub"], served["hf_home"])


@pytest.fixture
def http(served: dict[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served["url"], timeout=120) as c:
        yield c


def classify(http: httpx.Client) -> str:
    r = http.post(f"/v1/tasks/{TASK}", json={"model": "cls", "inputs": "a fine day"})
    assert r.status_code == 200, r.text
    return r.headers["x-hfp-revision"]


def test_bad_version_requests_are_4xx_that_say_what_to_fix(http: httpx.Client, served: dict) -> None:
    r = http.post("/v1/admin/models/cls/swap", json={})
    assert r.status_code == 400 and "revision" in r.json()["error"]["message"]
    r = http.post("/v1/admin/models/cls/swap", json={"revision": "v2", "force": True})
    assert r.status_code == 400
    r = http.post("/v1/admin/models/nope/swap", json={"revision": "v2"})
    assert r.status_code == 404
    r = http.post("/v1/admin/models/cls/swap", json={"revision": "no-such-branch"})
    assert r.status_code == 400 and "no-such-branch" in r.json()["error"]["message"]
    r = http.post("/v1/admin/models/cls/canary", json={"revision": "v2", "percent": 150})
    assert r.status_code == 400 and "percent" in r.json()["error"]["message"]
    r = http.post("/v1/admin/models/cls/canary/abort")
    assert r.status_code == 409 and "no canary" in r.json()["error"]["message"]
    assert classify(http) == served["v1"]


def test_swap_rollback_and_canary_over_http(http: httpx.Client, served: dict) -> None:
    v1, v2 = served["v1"], served["v2"]
    r = http.post("/v1/admin/models/cls/swap", json={"revision": "v2"})
    assert r.status_code == 200 and r.json()["commit"] == v2
    assert classify(http) == v2
    r = http.post("/v1/admin/models/cls/rollback")
    assert r.status_code == 200 and r.json()["commit"] == v1 and r.json()["previous"]["commit"] == v2
    assert classify(http) == v1

    r = http.post("/v1/admin/models/cls/canary", json={"revision": "v2", "percent": 50})
    assert r.status_code == 200 and r.json()["canary"]["percent"] == 50
    seen = Counter(classify(http) for _ in range(20))
    assert seen == {v1: 10, v2: 10}
    stats = http.get("/v1/admin/models/cls/versions").json()["canary"]
    assert stats["candidate"]["stats"]["requests"] == 10 and stats["primary"]["stats"]["requests"] == 10
    r = http.post("/v1/admin/models/cls/canary/promote")
    assert r.status_code == 200 and r.json()["commit"] == v2 and r.json()["canary"] is None
    assert classify(http) == v2

    events = http.get("/v1/admin/models/cls/history", params={"limit": 5}).json()["events"]
    assert [(e["action"], e["actor"], e["outcome"]) for e in events[:4]] == [
        ("promote", "admin", "ok"),
        ("canary", "admin", "ok"),
        ("rollback", "admin", "ok"),
        ("swap", "admin", "ok"),
    ]
    assert http.get("/v1/admin/models/nope/history").status_code == 404
    home = Path(http.get("/v1/admin/server").json()["home"] or "")
    assert (home / "versions.db").is_file()


def test_cli_history_swap_and_rollback(served: dict) -> None:
    runner = CliRunner()
    url = served["url"]
    out = runner.invoke(cli, ["models", "swap", "cls", "--revision", "v1", "--url", url])
    assert out.exit_code == 0, out.output
    assert f"revision v1 ({served['v1'][:12]})" in out.output
    out = runner.invoke(cli, ["models", "rollback", "cls", "--url", url])
    assert out.exit_code == 0 and "previous v1" in out.output
    out = runner.invoke(cli, ["models", "swap", "cls", "-r", "no-such-branch", "--url", url])
    assert out.exit_code == 1 and "no-such-branch" in out.output
    out = runner.invoke(cli, ["models", "history", "cls", "--url", url], env={"COLUMNS": "160"})
    assert out.exit_code == 0, out.output
    assert "version history" in out.output and "rollback" in out.output and "failed" in out.output
    out = runner.invoke(cli, ["models", "history", "cls", "--json", "--limit", "3", "--url", url])
    events = json.loads(out.output)
    assert [e["action"] for e in events] == ["swap", "rollback", "swap"]
    assert events[0]["outcome"] == "failed" and events[1]["outcome"] == "ok"
    out = runner.invoke(cli, ["models", "canary", "cls", "--url", url])
    assert out.exit_code == 0 and "cls: ready" in out.output
