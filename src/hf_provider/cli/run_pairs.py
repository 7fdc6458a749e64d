"""`hfp run` for the pair tasks: positional inputs become the request (rerank: the query, then the documents;
score: text_1, then the texts scored against it), and the answer prints as a ranked table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer

from hf_provider.cli.tables import print_table

PAIR_TASKS = ("rerank", "score")


def payload(task: str, values: Sequence[Any]) -> Any | None:
    """The request for `hfp run MODEL rerank QUERY DOC...` / `score TEXT_1 TEXT_2...`; None when the inputs are
    not plain texts (a JSON object is the request itself) or the task is not a pair task."""
    if task not in PAIR_TASKS or not all(isinstance(v, str) for v in values):
        return None
    if len(values) < 2:
        what = "a query and at least one document" if task == "rerank" else "text_1 and at least one text_2"
        raise typer.BadParameter(f"{task} takes {what}, or one JSON object")
    first, rest = values[0], list(values[1:])
    return {"query": first, "documents": rest} if task == "rerank" else {"text_1": first, "text_2": rest}


def show(task: str, request: Any, result: dict[str, Any]) -> None:
    """A ranked table (rerank) or one score per text (score), under the method that scored them."""
    typer.echo(f"method: {result.get('method')}")
    if task == "rerank":
        docs = request.get("documents", []) if isinstance(request, dict) else []
        rows = [
            [str(n), f"{r['relevance_score']:.4f}", _text(docs, r)]
            for n, r in enumerate(result.get("results", []), start=1)
        ]
        print_table(["rank", "score", "document"], rows, cut=("document",), right=("score",))
        return
    seconds = request.get("text_2", []) if isinstance(request, dict) else []
    seconds = [seconds] if isinstance(seconds, str) else seconds
    rows = [[str(t), f"{s:.4f}"] for t, s in zip(seconds, result.get("scores", []), strict=False)]
    print_table(["text_2", "score"], rows, cut=("text_2",), right=("score",))


def _text(docs: list[Any], r: dict[str, Any]) -> str:
    if "document" in r:
        return str(r["document"].get("text", ""))
    d = docs[r["index"]] if r["index"] < len(docs) else ""
    return d.get("text", "") if isinstance(d, dict) else str(d)
