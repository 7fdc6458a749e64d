"""Templates of a step's inputs: parsing (bad ones refused with what to write), lookups by key, index, the `text`
alias, a ranking's top entry, a mapped step's list, alternatives over skipped steps, and text around references."""

from __future__ import annotations

import numpy as np
import pytest

from hf_provider.pipelines.templates import Skipped, compile_value, parse, render


def r(template: object, **scope: object) -> object:
    return render(compile_value(template), scope)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{translate.text", "not a valid template"),
        ("{a!r}", "conversions and format specs"),
        ("{a:>5}", "conversions and format specs"),
        ("{}", "is not a reference"),
        ("{a..b}", "is not a reference"),
        ("{a|}", "is not a reference"),
    ],
)
def test_bad_templates_are_refused_saying_what_to_write(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse(text)


def test_a_missing_field_names_the_reference_and_the_fields_there_are() -> None:
    with pytest.raises(
        LookupError, match=r"\{t.labelz\}: t has no field 'labelz' \(it has: translation_text\)"
    ):
        r("{t.labelz}", t={"translation_text": "x"})
    with pytest.raises(LookupError, match="has 1 entries, no entry 3"):
        r("{t.3}", t=["a"])
    with pytest.raises(LookupError, match="is a str, which has no field 'x'"):
        r("{inputs.x}", inputs="plain text")


def test_text_stands_for_the_tasks_text_output() -> None:
    assert r("{t.text}", t={"translation_text": "bonjour"}) == "bonjour"
    assert r("{s.text}", s={"summary_text": "short"}) == "short"
    assert r("{g.text}", g={"generated_text": "hi", "finish_reason": "length"}) == "hi"
    assert r("{q.text}", q={"answer": "Paris", "score": 0.9}) == "Paris"


def test_a_ranking_answers_with_its_top_entry_and_a_list_field_by_field() -> None:
    ranking = [{"label": "POSITIVE", "score": 0.9}, {"label": "NEGATIVE", "score": 0.1}]
    assert r("{c.label}", c=ranking) == "POSITIVE"
    assert r("{c.1.label}", c=ranking) == "NEGATIVE"
    mapped = [{"summary_text": "a"}, {"summary_text": "b"}]
    assert r("{m.text}", m=mapped) == ["a", "b"]
    assert r("{m}", m=mapped) is not None and r("{m}", m=mapped) == mapped  # whole: passed through


def test_text_around_references_is_formatted_and_braces_escape() -> None:
    out = r(
        "question: {inputs.q} context: {s.text} {{literal}}", inputs={"q": "Who?"}, s={"summary_text": "Bo"}
    )
    assert out == "question: Who? context: Bo {literal}"
    assert r("n={x}", x=[1, 2]) == "n=[1, 2]"
    assert r("v={x}", x=np.array([0.5], dtype=np.float32)) == "v=[0.5]"


def test_structures_compile_item_by_item_and_literals_stay() -> None:
    out = r({"question": "{inputs.q}", "context": "{s.text}", "top_k": 2}, inputs={"q": "Q"}, s={"text": "C"})
    assert out == {"question": "Q", "context": "C", "top_k": 2}
    assert r(["{a.text}", "{b.text}"], a={"text": "1"}, b={"text": "2"}) == ["1", "2"]


def test_alternatives_take_the_first_step_that_ran_and_none_skips() -> None:
    assert r("{pos.text|neg.text}", neg={"generated_text": "n"}) == "n"
    assert r("{pos.text|neg.text}", pos={"summary_text": "p"}, neg={"generated_text": "n"}) == "p"
    with pytest.raises(Skipped):
        r("{pos.text|neg.text}")
    with pytest.raises(Skipped):
        r("prefix {pos.text}")
