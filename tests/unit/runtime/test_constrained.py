"""Grammar specs and the compiled-grammar cache (runtime/constrained.py) on the tiny BPE tokenizer."""

from __future__ import annotations

import pytest
import torch

from hf_provider.errors import InvalidInput
from hf_provider.runtime.constrained import GrammarCache, spec_from_param
from hf_provider.testing.tiny_tokenizers import bpe_tokenizer


@pytest.fixture(scope="module")
def tok():
    return bpe_tokenizer()


@pytest.mark.parametrize(
    ("value", "param"),
    [
        ("json", "grammar"),
        ({"type": "yaml"}, "grammar"),
        ({"type": "json_schema"}, "grammar.schema"),
        ({"type": "regex", "pattern": ""}, "grammar"),
        ({"type": "choice", "choices": []}, "grammar"),
        ({"type": "choice", "choices": ["a", 1]}, "grammar"),
        ({"type": "lark", "grammar": 3}, "grammar"),
    ],
)
def test_malformed_specs_are_refused_by_name(value: object, param: str) -> None:
    with pytest.raises(InvalidInput) as e:
        spec_from_param(value)
    assert e.value.param == param


def test_a_schema_that_cannot_be_enforced_names_the_problem(tok) -> None:
    cache = GrammarCache()
    for bad, word in (
        ({"type": "json_schema", "schema": {"type": "frob"}}, "frob"),
        ({"type": "regex", "pattern": "(unclosed"}, "grammar"),
    ):
        spec = spec_from_param(bad)
        with pytest.raises(InvalidInput) as e:
            cache.template(tok, spec)
        assert word in e.value.message and e.value.param == "grammar"
    assert cache.misses == 0  # nothing bad is kept


def test_compiled_grammars_are_cached_per_spec_and_evicted_least_recent_first(tok) -> None:
    cache = GrammarCache(size=2)
    a, b, c = (spec_from_param({"type": "regex", "pattern": p}) for p in ("a+", "b+", "c+"))
    first = cache.template(tok, a)
    assert cache.template(tok, a) is first and (cache.hits, cache.misses) == (1, 1)
    cache.template(tok, b)
    cache.template(tok, a)  # a is the most recent now
    cache.template(tok, c)  # evicts b
    assert cache.template(tok, a) is first
    cache.template(tok, b)
    assert cache.misses == 4


def test_a_row_matcher_allows_only_what_the_grammar_allows_then_the_end(tok) -> None:
    cache = GrammarCache()
    m = cache.matcher(tok, spec_from_param({"type": "choice", "choices": ["yes"]}))
    for token in tok("yes", add_special_tokens=False)["input_ids"]:
        scores = m.mask(
            torch.zeros(len(tok) + 3)
        )  # a padded embedding: ids past the tokenizer's never allowed
        allowed = (scores > float("-inf")).nonzero().flatten().tolist()
        assert token in allowed and all(i < len(tok) for i in allowed)
        m.accept(token)
    final = m.mask(torch.zeros(len(tok)))
    assert (final > float("-inf")).nonzero().flatten().tolist() == [tok.eos_token_id]
    with pytest.raises(ValueError, match="refused"):
        m.accept(5)
