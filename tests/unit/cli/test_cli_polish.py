"""Help text, error lines and early argument checks of `hfp` (no server, no model loads)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hf_provider.cli.main import app

runner = CliRunner()


def test_config_help_shows_the_toml_table_name() -> None:
    res = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "100"})
    assert res.exit_code == 0 and "[[models]]" in res.output, res.output


def test_every_models_subcommand_has_help() -> None:
    res = runner.invoke(app, ["models", "--help"], env={"COLUMNS": "100"})
    unpin = next(line for line in res.output.splitlines() if line.strip("│ ").startswith("unpin"))
    assert "evict" in unpin, res.output


def test_error_lines_are_not_hard_wrapped() -> None:
    res = runner.invoke(app, ["models", "load", "x", "--url", "http://127.0.0.1:9"], env={"COLUMNS": "40"})
    assert res.exit_code == 1
    assert any("http://127.0.0.1:9" in line and "hfp serve" in line for line in res.output.splitlines())


def test_run_unknown_task_names_the_tasks_before_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    import hf_provider.provider

    def no_provider(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was about to load")

    monkeypatch.setattr(hf_provider.provider.facade.Provider, "__init__", no_provider)
    res = runner.invoke(app, ["run", "all-MiniLM-L6-v2", "summarise", "x"])
    assert res.exit_code == 2, res.output
    assert "unknown task 'summarise'" in res.output and "did you mean 'summarization'" in res.output
    assert "question-answering" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("command", [["serve"], ["models"], ["top", "--once"]])
def test_bad_environment_variable_is_named(command: list[str]) -> None:
    res = runner.invoke(app, command, env={"HFP_SERVER__PORT": "abc", "COLUMNS": "60"})
    assert res.exit_code == 2, res.output
    assert "environment variable HFP_SERVER__PORT='abc'" in res.output and "in config" not in res.output
