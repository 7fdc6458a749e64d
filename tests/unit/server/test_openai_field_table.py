"""The OpenAI field table (server/openai_fields.py) covers every field of the official `openai` package's request
types, so a field OpenAI adds is noticed here, and the README's table says what the code does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hf_provider.server import openai_fields as F

README = Path(__file__).resolve().parents[3] / "README.md"
ROUTES = {
    "chat/completions": F.CHAT,
    "completions": F.COMPLETIONS,
    "embeddings": F.EMBEDDINGS,
    "responses": F.RESPONSES,
}


def _openai_fields() -> dict[str, set[str]]:
    from openai.types import completion_create_params as completions
    from openai.types import embedding_create_params as embeddings
    from openai.types.chat import completion_create_params as chat
    from openai.types.responses import response_create_params as responses

    def names(*types: type) -> set[str]:
        out: set[str] = set()
        for t in types:
            for klass in t.__mro__:  # TypedDicts: each class's own annotations
                out |= set(getattr(klass, "__annotations__", {}))
        return out

    return {
        "chat/completions": names(
            chat.CompletionCreateParamsStreaming, chat.CompletionCreateParamsNonStreaming
        ),
        "completions": names(
            completions.CompletionCreateParamsStreaming, completions.CompletionCreateParamsNonStreaming
        ),
        "embeddings": names(embeddings.EmbeddingCreateParams),
        "responses": names(
            responses.ResponseCreateParamsStreaming, responses.ResponseCreateParamsNonStreaming
        ),
    }


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_every_field_of_the_openai_request_types_is_in_the_table(route: str) -> None:
    theirs = _openai_fields()[route]
    assert {"model", "stream"} <= theirs | {"stream"}  # the walk found the types' fields at all
    missing = sorted(theirs - set(ROUTES[route]))
    assert not missing, (
        f"new OpenAI field(s) on {route}: decide honoured or refused in openai_fields.py: {missing}"
    )
    ours = sorted(set(ROUTES[route]) - theirs - F.EXTENSIONS)
    assert not ours, f"fields in the table that OpenAI's {route} does not have: {ours}"


def test_the_readme_table_lists_every_field_with_its_status() -> None:
    rows = re.findall(r"^\| `([a-z/]+)` \| `(\w+)` \| (honoured|refused) \|", README.read_text(), re.M)
    assert rows, "the README's OpenAI field table is missing"
    listed = {(route, field): status for route, field, status in rows}
    expected = {(r, name): f.status for r, table in ROUTES.items() for name, f in table.items()}
    assert listed == expected


def test_off_values_are_typed_so_true_is_not_one() -> None:
    assert F._same(0, 0) and not F._same(False, 0) and not F._same(True, 1) and F._same([], [])
    assert F.drop_off(F.CHAT, {"modalities": ["text"], "store": False, "model": "m"}) == {"model": "m"}
    assert F.drop_off(F.CHAT, {"store": True}) == {"store": True}
