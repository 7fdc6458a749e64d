from __future__ import annotations

import pytest

from hf_provider.errors import InvalidInput

TEXTS = ["Alice loves the wonderful garden in Paris.", "This movie is boring.", "Bob"]


def test_text_classification(handler, run) -> None:
    h = handler("bert-cls", "text-classification")
    one = run(h, TEXTS[0])
    assert len(one) == 1 and one[0]["label"] in {"NEGATIVE", "POSITIVE"} and 0 <= one[0]["score"] <= 1
    both = run(h, TEXTS[0], {"top_k": 2})
    assert {r["label"] for r in both} == {"NEGATIVE", "POSITIVE"}
    assert both[0]["score"] >= both[1]["score"] and sum(r["score"] for r in both) == pytest.approx(1.0)
    batch = run(h, TEXTS, {"top_k": 2})
    for text, res in zip(TEXTS, batch, strict=True):
        single = run(h, text, {"top_k": 2})
        assert [r["label"] for r in res] == [r["label"] for r in single]
        assert [r["score"] for r in res] == pytest.approx([r["score"] for r in single], abs=1e-5)
    with pytest.raises(InvalidInput, match="top_k"):
        run(h, "hi", {"top_k": 3})


def test_token_classification(handler, run) -> None:
    h = handler("bert-ner", "token-classification")
    text = "Yesterday Alice travelled from Paris to London with Bob."
    ents = run(h, text)
    assert isinstance(ents, list)
    for e in ents:
        assert set(e) == {"entity_group", "score", "word", "start", "end"}
        assert e["entity_group"] in {"PER", "LOC"}
        assert text[e["start"] : e["end"]] == e["word"] and 0 <= e["score"] <= 1
    assert [e["start"] for e in ents] == sorted(e["start"] for e in ents)
    batch = run(h, [text, "Carol lives in Rome."])
    assert batch[0] == [dict(e, score=pytest.approx(e["score"], abs=1e-5)) for e in ents]
    assert run(h, text, {"ignore_labels": ["O", "PER", "LOC"]}) == []


def test_token_grouping_follows_bio_tags() -> None:
    from hf_provider.runtime.tasks.classification import TokenClassification

    text = "Anna Maria lives in New York"
    toks = [
        ("B-PER", 0.9, 0, 4),
        ("I-PER", 0.7, 5, 10),
        ("O", 0.9, 11, 16),
        ("O", 0.9, 17, 19),
        ("B-LOC", 0.8, 20, 23),
        ("B-LOC", 0.6, 24, 28),
    ]
    out = TokenClassification._group(toks, text, {"O"})
    assert [(e["entity_group"], e["word"]) for e in out] == [
        ("PER", "Anna Maria"),
        ("LOC", "New"),
        ("LOC", "York"),
    ]
    assert out[0]["score"] == pytest.approx(0.8)


def test_fill_mask(handler, run) -> None:
    h = handler("bert-mlm", "fill-mask")
    res = run(h, "Alice lives in [MASK].")
    assert len(res) == 5
    for r in res:
        assert set(r) == {"token_str", "token", "score", "sequence"}
        assert r["sequence"].startswith("Alice lives in") and "[MASK]" not in r["sequence"]
    assert [r["score"] for r in res] == sorted((r["score"] for r in res), reverse=True)
    batch = run(h, ["Bob [MASK] the book.", "Alice lives in [MASK]."], {"top_k": 3})
    assert [r["token"] for r in batch[1]] == [r["token"] for r in res[:3]]


@pytest.mark.parametrize("text", ["Alice lives in Paris.", "[MASK] lives in [MASK]."])
def test_fill_mask_needs_one_mask(handler, run, text: str) -> None:
    with pytest.raises(InvalidInput, match=r"mask token \[MASK\] exactly once"):
        run(handler("bert-mlm", "fill-mask"), text)


def test_unknown_param_lists_allowed(handler, run) -> None:
    with pytest.raises(InvalidInput, match="allowed: top_k, truncate"):
        run(handler("bert-cls", "text-classification"), "hi", {"temperature": 1})
