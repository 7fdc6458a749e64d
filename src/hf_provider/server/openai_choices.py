"""From generation results to OpenAI's choices: `n` and `best_of` (rows of one request, one batch), logprobs in
chat's and completions' shapes, and the usage of a request whose prompt ran several times."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Most rows one prompt may ask for (n, best_of): they share one batch, whose rows are a model's slots.
MAX_CHOICES = 16


def rows_per_prompt(n: int, best_of: int | None) -> int:
    return max(n, best_of or n)


def pick(outs: Sequence[dict[str, Any]], prompts: int, rows: int, n: int) -> list[list[dict[str, Any]]]:
    """Per prompt, its `n` choices out of its `rows` results: the first n, or with best_of (rows > n) the n with
    the highest logprob per token (OpenAI's "best"), best first."""
    groups = []
    for i in range(prompts):
        mine = list(outs[i * rows : (i + 1) * rows])
        if rows > n:
            mine.sort(key=lambda o: o["logprob_sum"] / max(1, o["scored_tokens"]), reverse=True)
        groups.append(mine[:n])
    return groups


def usage(outs: Sequence[dict[str, Any]], rows: int) -> dict[str, int]:
    """A prompt's tokens count once however many rows ran it; every generated token counts (best_of too)."""
    prompt = sum(int(o.get("prompt_tokens", 0)) for o in outs[::rows])
    completion = sum(int(o.get("completion_tokens", 0)) for o in outs)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat_logprobs(out: dict[str, Any]) -> dict[str, Any] | None:
    entries = out.get("logprobs")
    if entries is None:
        return None

    def one(e: dict[str, Any]) -> dict[str, Any]:
        return {"token": e["token"], "logprob": e["logprob"], "bytes": list(e["token"].encode())}

    return {
        "content": [{**one(e), "top_logprobs": [one(t) for t in e["top"]]} for e in entries],
        "refusal": None,
    }


def completion_logprobs(out: dict[str, Any]) -> dict[str, Any] | None:
    """The legacy shape: parallel lists over the echoed prompt's tokens (when echoed: the first has no logprob)
    and the generated ones; `text_offset` is each token's start in the choice's text."""
    entries = [*(out.get("prompt_logprobs") or []), *(out.get("logprobs") or [])]
    if out.get("logprobs") is None:
        return None
    starts, at = [], 0
    for e in entries:
        starts.append(at)
        at += len(e["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [
            None if e["logprob"] is None else {t["token"]: t["logprob"] for t in e["top"]} for e in entries
        ],
        "text_offset": starts,
    }
