"""Checks `hfp` makes before any model loads (misspelt model names, a port in use) and quiet model loads."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from hf_provider.cli.main import app
from hf_provider.defaults import DEFAULT_MODEL_NAME

runner = CliRunner()


class _FakeProvider:
    """Stands in for Provider: records the model name it was asked for, loads nothing."""

    models: ClassVar[list[str]] = []

    def __init__(self, **_: Any) -> None:
        pass

    def __enter__(self) -> _FakeProvider:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def run(self, model: str, task: str, inputs: Any, params: Any) -> list[float]:
        _FakeProvider.models.append(model)
        return [0.0]


@pytest.fixture
def fake_provider(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import hf_provider.provider

    _FakeProvider.models = []
    monkeypatch.setattr(hf_provider.provider, "Provider", _FakeProvider)
    return _FakeProvider.models


@pytest.fixture
def no_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    import hf_provider.provider

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("a misspelt model name must not reach the Provider (Hub, loads)")

    monkeypatch.setattr(hf_provider.provider.facade.Provider, "__init__", refuse)


# 1. misspelt model names -----------------------------------------------------------------------------------
def test_run_misspelt_default_model_suggests_it_and_contacts_nothing(no_provider: None) -> None:
    res = runner.invoke(app, ["run", "all-MiniLM-L6-vv2", "embeddings", "x"])
    assert res.exit_code == 2, res.output
    assert "unknown model 'all-MiniLM-L6-vv2'; did you mean 'all-MiniLM-L6-v2'?" in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output


def test_run_misspelt_configured_name_suggests_it(no_provider: None, tmp_path: Path) -> None:
    cfg = tmp_path / "hfp.toml"
    cfg.write_text('[[models]]\nname = "my-classifier"\nsource = "some-org/some-model"\n')
    res = runner.invoke(app, ["run", "my-clasifier", "text-classification", "x", "--config", str(cfg)])
    assert res.exit_code == 2, res.output
    assert "did you mean 'my-classifier'?" in res.output


def test_run_known_names_folders_and_far_names_still_go_through(
    fake_provider: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "all-MiniLM-L6-vv2").mkdir()  # an existing folder wins, however close its name
    cfg = tmp_path / "hfp.toml"
    cfg.write_text('[[models]]\nname = "my-classifier"\nsource = "some-org/some-model"\n')
    for args in (
        ["all-MiniLM-L6-vv2"],  # the folder
        [DEFAULT_MODEL_NAME, "--config", str(cfg)],  # the built-in default, though not configured here
        ["my-classifier", "--config", str(cfg)],  # configured
        ["some-org/another-model"],  # a Hub id close to nothing known
    ):
        res = runner.invoke(app, ["run", args[0], "embeddings", "x", *args[1:]])
        assert res.exit_code == 0, res.output
    assert fake_provider == [
        "all-MiniLM-L6-vv2",
        DEFAULT_MODEL_NAME,
        "my-classifier",
        "some-org/another-model",
    ]


# 2. no third-party progress bars ----------------------------------------------------------------------------
@pytest.fixture
def progress_bars_on() -> Iterator[None]:
    """Start with transformers' and huggingface_hub's bars on (as in a fresh process); put them back after."""
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as tf_logging

    was_on = tf_logging.is_progress_bar_enabled(), not hub_utils.are_progress_bars_disabled()
    tf_logging.enable_progress_bar()
    yield
    if not was_on[0]:
        tf_logging.disable_progress_bar()
    if was_on[1]:
        hub_utils.enable_progress_bars()
    else:
        hub_utils.disable_progress_bars()


def test_run_prints_no_loading_weights_bar(progress_bars_on: None, tiny_models: dict[str, Path]) -> None:
    res = runner.invoke(app, ["run", str(tiny_models["bert-cls"]), "text-classification", "hello", "--json"])
    assert res.exit_code == 0, res.output
    assert "Loading weights" not in res.output  # click >= 8.2: output holds stdout and stderr
    assert "Loading weights" not in res.stderr


# 3. a port in use ------------------------------------------------------------------------------------------
@pytest.fixture
def no_build(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    import hf_provider.server.factory

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("models were built although the port is taken")

    monkeypatch.setattr(hf_provider.server.factory, "build", refuse)
    monkeypatch.setattr(uvicorn, "run", refuse)


def test_serve_port_in_use_fails_before_loading(no_build: None) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = runner.invoke(app, ["serve", "--host", "127.0.0.1", "--port", str(port)])
    assert res.exit_code == 2, res.output
    assert f"port {port} on 127.0.0.1 is already in use; choose another with --port" in res.output
    assert "Traceback" not in res.output


def test_serve_free_port_is_left_free_for_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    import hf_provider.server.factory

    with socket.socket() as probe:  # a port that is free now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    calls: list[int] = []

    def fake_run(application: Any, *, host: str, port: int, **_: Any) -> None:
        with socket.socket() as s:  # the check closed its socket: uvicorn can bind the same way
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            s.listen()
        calls.append(port)

    monkeypatch.setattr(hf_provider.server.factory, "build", lambda settings: object())
    monkeypatch.setattr(uvicorn, "run", fake_run)
    res = runner.invoke(app, ["serve", "--no-supervise", "--host", "127.0.0.1", "--port", str(port)])
    assert res.exit_code == 0, res.output
    assert calls == [port]
