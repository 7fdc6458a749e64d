"""`hfp errors`: the server's error groups as a table or JSON, filters passed through, failures in one line."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from hf_provider.cli import main as cli

runner = CliRunner()
GROUP = {
    "fingerprint": "0123456789abcdef",
    "error_class": "oom",
    "exc_type": "OutOfMemory",
    "model": "lm",
    "revision": None,
    "phase": "forward",
    "count": 42,
    "first_seen": 1_700_000_000.0,
    "last_seen": 1_700_000_100.0,
    "message": "out of memory on [a] single item",
    "samples": [],
}


def serve_with(monkeypatch: pytest.MonkeyPatch, status: int, body: dict, seen: list[httpx.Request]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=body)

    monkeypatch.setattr(
        cli,
        "connect",
        lambda *a, **k: httpx.Client(base_url="http://hfp", transport=httpx.MockTransport(handler)),
    )


def test_table_and_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []
    serve_with(monkeypatch, 200, {"groups": [GROUP]}, seen)
    res = runner.invoke(
        cli.app, ["errors", "--model", "lm", "--class", "oom", "--since", "1h"], env={"COLUMNS": "200"}
    )
    assert res.exit_code == 0, res.output
    assert "42" in res.output and "out of memory on [a] single item" in res.output  # brackets are not markup
    assert dict(seen[0].url.params) == {"model": "lm", "class": "oom", "since": "1h"}


def test_json(monkeypatch: pytest.MonkeyPatch) -> None:
    serve_with(monkeypatch, 200, {"groups": [GROUP]}, [])
    res = runner.invoke(cli.app, ["errors", "--json"])
    assert res.exit_code == 0 and json.loads(res.output) == [GROUP]


def test_server_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    serve_with(monkeypatch, 400, {"error": {"message": "class must be one of oom, ..."}}, [])
    res = runner.invoke(cli.app, ["errors", "--class", "nope"])
    assert res.exit_code == 1 and "class must be one of" in res.output


def test_no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    monkeypatch.setattr(
        cli,
        "connect",
        lambda *a, **k: httpx.Client(base_url="http://hfp", transport=httpx.MockTransport(handler)),
    )
    res = runner.invoke(cli.app, ["errors"])
    assert res.exit_code == 1 and "no hfp server answers" in res.output
