"""`hfp run` for rerank, score and zero-shot on the tiny cross-encoder and NLI models (real Provider)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hf_provider.cli import main as cli

runner = CliRunner()
DOCS = ["Alice lives in Paris.", "Bob likes trains.", "The weather is mild."]


@pytest.fixture(scope="module")
def config(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-pairs") / "hfp.toml"
    path.write_text(
        f'[[models]]\nname = "rr"\nsource = "{tiny_models["bert-rerank"]}"\ndevice = "cpu"\n'
        f'[[models]]\nname = "nli"\nsource = "{tiny_models["bert-nli"]}"\ndevice = "cpu"\n'
    )
    return path


def hfp(config: Path, *args: str) -> tuple[int, str]:
    res = runner.invoke(cli.app, ["run", *args, "--config", str(config)], env={"COLUMNS": "80"})
    return res.exit_code, res.output


def test_rerank_takes_the_query_then_documents(config: Path, tiny_models: dict[str, Path]) -> None:
    import transformers

    pipe = transformers.pipeline("text-classification", model=str(tiny_models["bert-rerank"]), device="cpu")
    ref = [pipe({"text": "Where does Alice live?", "text_pair": d})["score"] for d in DOCS]
    code, out = hfp(config, "rr", "rerank", "Where does Alice live?", *DOCS, "--json")
    assert code == 0, out
    got = json.loads(out)
    assert got["method"] == "cross-encoder"
    assert [r["index"] for r in got["results"]] == sorted(range(3), key=lambda i: -ref[i])
    code, out = hfp(config, "rr", "rerank", "Where does Alice live?", *DOCS)
    lines = out.splitlines()
    assert lines[0] == "method: cross-encoder" and "rank" in lines[1]
    best = DOCS[got["results"][0]["index"]]
    assert lines[3].startswith("1") and best in lines[3]


def test_score_and_zero_shot_print_tables(config: Path) -> None:
    code, out = hfp(config, "rr", "score", "Where does Alice live?", *DOCS[:2])
    assert code == 0, out
    assert "text_2" in out and DOCS[0] in out and DOCS[1] in out
    code, out = hfp(
        config,
        "nli",
        "zero-shot-classification",
        "Alice went to Paris.",
        "-p",
        "candidate_labels=travel,sport",
    )
    assert code == 0, out
    assert out.splitlines()[0].split() == ["label", "score"]
    assert {line.split()[0] for line in out.splitlines()[2:]} == {"travel", "sport"}


def test_rerank_without_documents_and_a_refused_task_exit_with_a_message(config: Path) -> None:
    code, out = hfp(config, "rr", "rerank", "only a query")
    assert code == 2 and "a query and at least one document" in out
    code, out = hfp(config, "nli", "rerank", "q", "d")
    assert code != 0 and "does not serve task 'rerank'" in out
