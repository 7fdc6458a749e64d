"""What `hfp run` prints for people, by task: text as text, labels and entities as small tables, a vector as its
dimension, norm and first values. `--json` (cli/main.py) prints the result itself, unchanged, for machines."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import typer

from hf_provider.cli.run_pairs import PAIR_TASKS
from hf_provider.cli.run_pairs import show as show_pairs
from hf_provider.cli.tables import print_table

FIRST_VALUES = 5  # of an embedding: enough to tell two vectors apart at a glance
_LABELS = ("text-classification", "image-classification", "zero-shot-image-classification")


def show(task: str, inputs: Sequence[Any], result: Any, request: Any = None) -> None:
    """Print `result` (lists, not numpy: see main._plain) of `task` on `inputs`; with several inputs, one
    block per input under a header naming it. `request`: what was sent (rerank and score print from it)."""
    if task in PAIR_TASKS and isinstance(result, dict):  # one answer for the whole request
        show_pairs(task, request, result)
        return
    if len(inputs) == 1:
        _one(task, result)
        return
    for i, (item, answer) in enumerate(zip(inputs, result, strict=False), start=1):
        name = f"{len(item)} bytes of audio" if isinstance(item, bytes) else _short(item)
        typer.echo(("" if i == 1 else "\n") + typer.style(f"[{i}] {name}", bold=True))
        _one(task, answer)


def _one(task: str, r: Any) -> None:
    if task == "embeddings" and _is_vector(r):
        typer.echo(vector_summary(r))
    elif isinstance(r, dict) and "answer" in r:  # question-answering
        typer.echo(f"{r['answer']}  (score {_score(r.get('score'))})")
    elif task == "automatic-speech-recognition" and isinstance(r, dict):
        typer.echo(r.get("text", ""))
    elif isinstance(r, dict) and (text := _text(r)) is not None:  # generation, summarization, translation
        typer.echo(text)
    elif task in _LABELS and _rows(r, "label"):
        rows = sorted(_rows(r, "label"), key=lambda d: -(d.get("score") or 0))
        print_table(
            ["label", "score"], [[d["label"], _score(d.get("score"))] for d in rows], right=("score",)
        )
    elif task == "zero-shot-classification" and isinstance(r, dict) and "labels" in r:
        print_table(
            ["label", "score"],
            [[label, _score(s)] for label, s in zip(r["labels"], r.get("scores", []), strict=False)],
            right=("score",),
        )
    elif task == "token-classification" and isinstance(r, list):
        if not r:
            typer.echo("no entities found")
            return
        print_table(
            ["word", "label", "score", "at"],
            [
                [
                    d.get("word", ""),
                    d.get("entity_group") or d.get("entity", ""),
                    _score(d.get("score")),
                    _span(d),
                ]
                for d in r
            ],
            cut=("word",),
            right=("score",),
        )
    elif task == "fill-mask" and _rows(r, "token_str"):
        print_table(
            ["token", "score", "sequence"],
            [[d["token_str"], _score(d.get("score")), d.get("sequence", "")] for d in _rows(r, "token_str")],
            cut=("sequence",),
            right=("score",),
        )
    else:  # a shape this module does not know: pretty-printed, as before
        from rich import print as rprint

        rprint(r)


def vector_summary(v: Sequence[float]) -> str:
    """'384 dimensions · norm 1.0000 · [0.0123, -0.0456, ...]': not 384 lines of numbers."""
    norm = math.sqrt(sum(x * x for x in v))
    head = ", ".join(f"{x:.4f}" for x in v[:FIRST_VALUES])
    more = ", ..." if len(v) > FIRST_VALUES else ""
    return f"{len(v)} dimensions · norm {norm:.4f} · [{head}{more}]"


def _is_vector(r: Any) -> bool:
    return isinstance(r, list) and bool(r) and all(isinstance(x, int | float) for x in r)


def _text(r: dict[str, Any]) -> str | None:
    """The text of a generation result: generated_text, summary_text, translation_text."""
    for key, value in r.items():
        if key.endswith("_text") and isinstance(value, str):
            return value
    return None


def _rows(r: Any, key: str) -> list[dict[str, Any]]:
    """`r` as a list of result dicts holding `key` (a classifier answers one dict or a list); [] otherwise."""
    rows = [r] if isinstance(r, dict) else r
    if isinstance(rows, list) and rows and all(isinstance(d, dict) and key in d for d in rows):
        return rows
    return []


def _score(s: Any) -> str:
    return f"{s:.4f}" if isinstance(s, int | float) else "-"


def _span(d: dict[str, Any]) -> str:
    start, end = d.get("start"), d.get("end")
    return f"{start}-{end}" if isinstance(start, int) and isinstance(end, int) else ""


def _short(item: Any, limit: int = 60) -> str:
    if isinstance(item, dict):  # a question-answering input
        item = " ".join(f"{k}={v}" for k, v in item.items())
    text = str(item)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
