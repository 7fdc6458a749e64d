"""The README's pipeline examples run offline as written, on the tiny models `python -m hf_provider.testing.models
models` builds (their folders stand in for `models/`)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from hf_provider.provider import Provider
from hf_provider.settings import load_settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_pipelines_run(tiny_models: dict[str, Path]) -> None:
    section = README.read_text(encoding="utf-8").split("## Pipelines", 1)[1].split("\n## ", 1)[0]
    toml = re.search(r"```toml\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    folder = tiny_models["t5"].parent
    config = tomllib.loads(toml.replace('"models/', f'"{folder}/'))
    assert [p["name"] for p in config["pipelines"]] == ["digest", "route", "each"]
    with Provider(settings=load_settings({**config, "metrics_enabled": False})) as p:
        assert isinstance(p.pipeline("digest", "The committee met on Tuesday.")["summary_text"], str)
        routed = p.pipeline("route", "A quiet day by the river.", return_steps=True)
        ran = [name for name in ("short", "long") if not routed["steps"][name]["skipped"]]
        assert len(ran) == 1 and "translation_text" in routed["outputs"]
        assert len(p.pipeline("each", {"docs": ["one", "two"]})) == 2
