"""zero-shot-classification against transformers' ZeroShotClassificationPipeline on the same weights."""

from __future__ import annotations

import pytest

from hf_provider.errors import InvalidInput, TaskNotSupported, TooManyItems
from hf_provider.runtime.tasks import build_handler

TEXTS = ["Alice travelled from London to Paris by train.", "Stocks fell sharply on Monday.", "Bob"]
LABELS = ["travel", "finance", "sport", "cooking"]


@pytest.fixture(scope="module")
def pipeline(loaded):
    import transformers

    model = loaded("bert-nli")
    return transformers.pipeline(
        "zero-shot-classification", model=model.module, tokenizer=model.tokenizer, device="cpu"
    )


def _same(got: dict, ref: dict) -> None:
    assert got["sequence"] == ref["sequence"]
    assert got["labels"] == ref["labels"]
    assert got["scores"] == pytest.approx(ref["scores"], abs=1e-4)


# failure paths ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "param", "match"),
    [
        ({}, "candidate_labels", "must name at least one label"),
        ({"candidate_labels": []}, "candidate_labels", "must name at least one label"),
        ({"candidate_labels": " , "}, "candidate_labels", "must name at least one label"),
        ({"candidate_labels": ["a", ""]}, "candidate_labels", r"'candidate_labels\[1\]'"),
        ({"candidate_labels": ["a", 2]}, "candidate_labels", r"'candidate_labels\[1\]'"),
        ({"candidate_labels": LABELS, "hypothesis_template": "No slot."}, "hypothesis_template", "with {}"),
        ({"candidate_labels": LABELS, "hypothesis_template": 3}, "hypothesis_template", "with {}"),
        ({"candidate_labels": LABELS, "multi_label": "no"}, "multi_label", "boolean"),
        ({"candidate_labels": LABELS, "top_k": 2}, "top_k", "allowed"),
    ],
)
def test_bad_parameters_name_the_field(handler, run, params: dict, param: str, match: str) -> None:
    with pytest.raises(InvalidInput, match=match) as e:
        run(handler("bert-nli", "zero-shot-classification"), TEXTS[0], params)
    assert e.value.param == param


@pytest.mark.parametrize("inputs", ["", [], ["ok", " "], [1]])
def test_empty_inputs_are_refused(handler, run, inputs) -> None:
    with pytest.raises(InvalidInput):
        run(handler("bert-nli", "zero-shot-classification"), inputs, {"candidate_labels": LABELS})


def test_label_and_pair_limits(handler, run) -> None:
    h = handler("bert-nli", "zero-shot-classification", batching={"max_candidate_labels": 3})
    with pytest.raises(TooManyItems, match=r"has 4 labels; at most 3 .*max_candidate_labels") as e:
        run(h, TEXTS[0], {"candidate_labels": LABELS})
    assert e.value.param == "candidate_labels"
    h = handler("bert-nli", "zero-shot-classification", batching={"max_items_per_request": 10})
    with pytest.raises(TooManyItems, match=r"3 input\(s\) x 4 candidate labels make 12 inputs; at most 10"):
        run(h, TEXTS, {"candidate_labels": LABELS})


def test_models_without_an_entailment_label_say_so(loaded) -> None:
    with pytest.raises(TaskNotSupported, match=r"labels \(NEGATIVE, POSITIVE\) name no entailment class"):
        build_handler("zero-shot-classification", loaded("bert-cls"))
    with pytest.raises(TaskNotSupported, match="no \\*ForSequenceClassification head"):
        build_handler("zero-shot-classification", loaded("minilm"))


def test_over_long_sequence_is_refused_unless_truncated(handler, run, pipeline) -> None:
    h = handler("bert-nli", "zero-shot-classification", max_length=24)
    text = " ".join(["harbour"] * 40)
    with pytest.raises(InvalidInput, match=r"input 0 with the hypothesis of label 'travel' is .* at most 24"):
        run(h, text, {"candidate_labels": LABELS})
    out = run(h, text, {"candidate_labels": LABELS, "truncate": True})
    assert sorted(out["labels"]) == sorted(LABELS)


# results equal the pipeline -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [
        {"candidate_labels": LABELS},
        {"candidate_labels": LABELS, "multi_label": True},
        {"candidate_labels": ["travel"]},  # one label: entailment against contradiction, as multi_label
        {"candidate_labels": "travel, finance,sport"},  # the pipeline's comma-separated string
        {"candidate_labels": LABELS, "hypothesis_template": "The topic is {}."},
    ],
)
def test_equals_the_pipeline(handler, run, pipeline, params: dict) -> None:
    h = handler("bert-nli", "zero-shot-classification")
    got = run(h, TEXTS, params)
    ref = pipeline(TEXTS, **params)
    assert len(got) == len(TEXTS)
    for g, r in zip(got, ref, strict=True):
        _same(g, r)
    _same(run(h, TEXTS[1], params), pipeline(TEXTS[1], **params))  # one input: one answer, unwrapped


def test_hypotheses_of_two_requests_in_one_batch(handler, pipeline) -> None:
    """Pairs of two requests with different labels share one batch (one queue key) and each answer is the
    pipeline's."""
    import torch

    h = handler("bert-nli", "zero-shot-classification")
    a_items, a, _ = h.parse(TEXTS[0], {"candidate_labels": LABELS})
    b_items, b, _ = h.parse(TEXTS[1:], {"candidate_labels": ["news", "sport"], "multi_label": True})
    assert h.batch_key(a) == h.batch_key(b)
    batch = h.preprocess(a_items + b_items, a)
    with torch.inference_mode():
        res = h.postprocess(batch, h.forward(batch, a), a)
    _same(h.assemble(res[: len(a_items)], a, True), pipeline(TEXTS[0], candidate_labels=LABELS))
    ref = pipeline(TEXTS[1:], candidate_labels=["news", "sport"], multi_label=True)
    for g, r in zip(h.assemble(res[len(a_items) :], b, False), ref, strict=True):
        _same(g, r)
