"""`hfp run` prints for people by task (`--json` unchanged for machines); `hfp errors` fits 80 columns, one line a
group, with the full text under --wide and --json."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

import hf_provider.provider as provider_module
from hf_provider.cli import main as cli

runner = CliRunner()


class FakeProvider:
    """Answers every run with `answer`: the printing is under test, not the model."""

    answer: Any = None

    def __init__(self, **_: Any) -> None: ...

    def __enter__(self) -> FakeProvider:
        return self

    def __exit__(self, *exc: object) -> None: ...

    def run(self, model: str, task: str, inputs: Any, params: Any) -> Any:
        return self.answer


def run(monkeypatch: pytest.MonkeyPatch, answer: Any, *args: str) -> str:
    FakeProvider.answer = answer
    monkeypatch.setattr(provider_module, "Provider", FakeProvider)
    res = runner.invoke(cli.app, ["run", "m", *args], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    return res.output


def test_text_tasks_print_the_text(monkeypatch: pytest.MonkeyPatch) -> None:
    out = run(monkeypatch, {"summary_text": "A short summary."}, "summarization", "long text")
    assert out == "A short summary.\n"
    out = run(monkeypatch, {"generated_text": "Hi", "finish_reason": "length"}, "text-generation", "x")
    assert out == "Hi\n"


def test_embeddings_are_summarised_not_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = [np.full(384, 0.05, dtype=np.float32), np.zeros(384, dtype=np.float32)]
    out = run(monkeypatch, vectors, "embeddings", "a cat", "a kitten")
    lines = out.splitlines()
    assert lines[0].endswith("[1] a cat") and "[2] a kitten" in out
    assert "384 dimensions · norm 0.9798 · [0.0500, 0.0500, 0.0500, 0.0500, 0.0500, ...]" in lines
    assert len(lines) == 5  # header, summary, blank, header, summary: not 768 numbers


def test_labels_entities_candidates_and_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    labels = [{"label": "NEGATIVE", "score": 0.1}, {"label": "POSITIVE", "score": 0.9}]
    out = run(monkeypatch, labels, "text-classification", "great")
    assert out.index("POSITIVE") < out.index("NEGATIVE") and "0.9000" in out and "{" not in out
    entities = [{"entity_group": "LOC", "score": 0.75, "word": "Paris", "start": 9, "end": 14}]
    out = run(monkeypatch, entities, "token-classification", "I love Paris")
    assert "Paris" in out and "LOC" in out and "0.7500" in out and "9-14" in out
    assert "no entities found" in run(monkeypatch, [], "token-classification", "x")
    masks = [{"token_str": "cat", "token": 1, "score": 0.5, "sequence": "a cat sat"}]
    out = run(monkeypatch, masks, "fill-mask", "a [MASK] sat")
    assert "cat" in out and "a cat sat" in out and "0.5000" in out
    qa = json.dumps({"question": "Who?", "context": "Alice lives in Paris."})
    out = run(monkeypatch, {"answer": "Alice", "score": 0.25, "start": 0, "end": 5}, "question-answering", qa)
    assert out == "Alice  (score 0.2500)\n"


def test_json_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    out = run(monkeypatch, {"summary_text": "S"}, "summarization", "x", "--json")
    assert json.loads(out) == {"summary_text": "S"}
    out = run(monkeypatch, np.arange(3, dtype=np.float32), "embeddings", "x", "--json")
    assert json.loads(out) == [0.0, 1.0, 2.0]


def test_run_a_real_classifier_prints_a_table(tiny_models: dict) -> None:
    res = runner.invoke(cli.app, ["run", str(tiny_models["bert-cls"]), "text-classification", "hello"])
    assert res.exit_code == 0, res.output
    assert "label" in res.output and "score" in res.output and "'label'" not in res.output


GROUP = {
    "fingerprint": "0123456789abcdef",
    "error_class": "oom",
    "exc_type": "OutOfMemoryError",
    "model": "all-MiniLM-L6-v2",
    "revision": None,
    "phase": "forward",
    "count": 42,
    "first_seen": 1_700_000_000.0,
    "last_seen": 1_700_000_100.0,
    "message": "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.2 GiB total capacity)\nand more",
    "samples": [],
}


def errors(monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    short = GROUP | {"model": "lm", "message": "short", "count": 3}
    body = {"groups": [GROUP, short]}
    monkeypatch.setattr(
        cli,
        "connect",
        lambda *a, **k: httpx.Client(
            base_url="http://hfp", transport=httpx.MockTransport(lambda r: httpx.Response(200, json=body))
        ),
    )
    res = runner.invoke(cli.app, ["errors", *args], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    return res.output


def test_errors_fit_80_columns_one_line_a_group(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = errors(monkeypatch).splitlines()
    assert len(lines) == 4  # head, rule, two groups
    assert all(len(line) <= 80 for line in lines)
    assert "all-MiniLM-L6-v2" in lines[2] and lines[2].rstrip().endswith("…")  # the message gives way
    assert "OutOfMemoryError: CUDA" in lines[2] and "OutOfMemoryError: short" in lines[3]


def test_errors_wide_shows_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    out = errors(monkeypatch, "--wide")
    assert "79.2 GiB total capacity) and more" in out and "0123456789abcdef" in out and "…" not in out
    assert len(out.splitlines()) == 4


def test_print_table_cuts_only_the_long_columns(capsys: pytest.CaptureFixture[str]) -> None:
    from hf_provider.cli.tables import print_table

    rows = [["paraphrase-multilingual-mpnet-base-v2", "ready", "x" * 60, "y" * 60, "86.7 MiB"]]
    columns = ["name", "state", "tasks", "source", "weights"]
    print_table(columns, rows, cut=("tasks", "source"), right=("weights",), width=80)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(len(line) <= 80 for line in lines)
    assert "paraphrase-multilingual-mpnet-base-v2" in lines[2] and "86.7 MiB" in lines[2]
    assert lines[2].count("…") == 2


def test_models_history_is_one_line_an_event_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    from hf_provider.cli import versions

    detail = "10% of requests to v3; p95 within 5% of the serving version over 500 requests"
    event = {"ts": 1.7e9, "action": "canary", "revision": "v3", "commit": "0123456789abcdef", "actor": "cli"}
    body = {"events": [event | {"outcome": "ok", "detail": detail}]}
    monkeypatch.setattr(
        versions,
        "connect",
        lambda *a, **k: httpx.Client(
            base_url="http://hfp", transport=httpx.MockTransport(lambda r: httpx.Response(200, json=body))
        ),
    )
    res = runner.invoke(cli.app, ["models", "history", "t5"], env={"COLUMNS": "80"})
    lines = res.output.splitlines()
    assert res.exit_code == 0 and len(lines) == 4 and all(len(line) <= 80 for line in lines), res.output
    assert lines[3].rstrip().endswith("…") and "0123456789ab" in lines[3]
    res = runner.invoke(cli.app, ["models", "history", "t5", "--wide"], env={"COLUMNS": "80"})
    assert detail in res.output


def test_cache_prune_says_the_budget_in_binary_units() -> None:
    res = runner.invoke(cli.app, ["cache", "prune", "--budget", "1GiB", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "budget 1.0 GiB" in res.output and "GB" not in res.output.replace("GiB", "")
