"""`hfp models` and `hfp top` show a model whose load failed as `failed`, with its reason (issue 29 point 1)."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from hf_provider.cli import main as cli

REASON = (
    "configured model 'mine' cannot be loaded: source '/x/my-model' is not a folder and not a Hub repo id"
)
FAILED: dict[str, Any] = {
    "name": "mine",
    "state": "failed",
    "error": REASON,
    "tasks": [],
    "source": "/x/my-model",
}


def _client(routes: dict[str, Any]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        body = routes.get(request.url.path)
        return httpx.Response(200, json=body) if body is not None else httpx.Response(404)

    return httpx.Client(base_url="http://hfp", transport=httpx.MockTransport(handler))


def test_models_shows_failed_and_the_whole_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "connect", lambda *a, **k: _client({"/v1/admin/models": {"models": [FAILED]}}))
    res = CliRunner().invoke(cli.app, ["models"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert "failed" in res.output and f"mine failed: {REASON}" in " ".join(res.output.split())


def test_top_names_the_failed_model_and_its_reason() -> None:
    from hf_provider.cli.top import top

    stats = {"throughput_per_s": 0.0, "latency_ms": {"p50": None, "p95": None}, "error_rate": 0.0}
    client = _client(
        {
            "/v1/admin/series": {"t": [0], "models": ["mine"]},
            "/v1/admin/stats": stats,
            "/v1/admin/models": {"models": [FAILED]},
        }
    )
    out = io.StringIO()
    assert top(once=True, client=client, console=Console(file=out, width=200)) == 0
    assert f"mine failed: {REASON}" in out.getvalue()
