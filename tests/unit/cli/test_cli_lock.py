"""`hfp lock` with nothing to lock refuses, says why, and writes no file (issue 29 point 8)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hf_provider.cli import main as cli

runner = CliRunner()


def test_lock_without_a_config_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(cli.app, ["lock"])
    assert res.exit_code != 0
    assert "nothing to lock" in res.stderr and "--config" in res.stderr
    assert not (tmp_path / "hfp.lock").exists()


def test_lock_with_only_local_folders_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    config = tmp_path / "hfp.toml"
    config.write_text(f'[[models]]\nname = "mine"\nsource = "{folder}"\ntasks = ["embeddings"]\n')
    res = runner.invoke(cli.app, ["lock", "--config", str(config)])
    assert res.exit_code != 0
    assert "nothing to lock" in res.stderr and "local folder" in res.stderr and "mine" in res.stderr
    assert not (tmp_path / "hfp.lock").exists()
