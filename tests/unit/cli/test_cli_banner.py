"""`hfp serve`'s first lines: version, address, models with their state, dashboard URL, API key (no uvicorn)."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hf_provider import __version__
from hf_provider.cli.banner import banner_lines, log_config
from hf_provider.cli.main import app
from hf_provider.settings import Settings
from hf_provider.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[3]


def _settings(**kwargs: Any) -> Settings:
    models = [
        ModelSpec(name="minilm", source="/m/minilm", tasks=["embeddings"]),
        ModelSpec(name="t5", source="/m/t5", keep_alive=0),
    ]
    return Settings(models=models, **kwargs)


def test_the_banner_names_version_address_models_dashboard_and_key() -> None:
    text = "\n".join(banner_lines(_settings()))
    assert text.splitlines()[0] == f"hf-provider {__version__} serving on http://127.0.0.1:8000"
    assert "dashboard: http://127.0.0.1:8000/dashboard" in text
    assert "API key:   not required" in text
    assert re.search(r"minilm +loading +\(embeddings\)", text), text
    assert re.search(r"t5 +loads on first request +\(all supported tasks\)", text), text  # keep_alive 0


def test_the_banner_with_a_key_on_every_interface() -> None:
    server = {"host": "0.0.0.0", "port": 9000, "api_key": "sekrit"}
    text = "\n".join(banner_lines(_settings(load_on_start=False, server=server)))
    assert "serving on http://127.0.0.1:9000 (listening on every interface, 0.0.0.0:9000)" in text
    assert "API key:   required" in text and "sekrit" not in text
    assert "minilm  loads on first request" in text  # nothing loads at start


def test_the_server_logs_each_models_outcome_in_uvicorns_format() -> None:
    config = log_config("info")
    assert config["loggers"]["hf_provider"] == {"handlers": ["default"], "level": "INFO", "propagate": False}
    assert log_config("trace")["loggers"]["hf_provider"]["level"] == "DEBUG"


@pytest.fixture
def no_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    import hf_provider.server.factory

    monkeypatch.setattr(hf_provider.server.factory, "build", lambda settings: object())
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)


def test_make_serve_first_lines_name_the_default_model_and_the_dashboard(no_serve: None) -> None:
    """`make serve` is `hfp serve $(ARGS)` with no config: the built-in default model."""
    (recipe,) = re.findall(r"^serve:.*\n\t(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert "hfp serve $(ARGS)" in recipe
    with socket.socket() as s:  # a free port: the banner's URL is the one uvicorn will bind
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = CliRunner().invoke(app, ["serve", "--no-supervise", "--port", str(port)], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    first = res.stderr.splitlines()[:5]
    assert first[0].startswith(f"hf-provider {__version__} serving on http://127.0.0.1:{port}"), first
    assert any(f"http://127.0.0.1:{port}/dashboard" in line for line in first), first
    assert any("all-MiniLM-L6-v2" in line and "loading" in line for line in first), first
