from __future__ import annotations

import pytest

from hf_provider.errors import InvalidInput, TooManyItems

TEXTS = ["Alice lives in Paris.", "The weather in Rome was great today, said Carol.", "Bob"]


@pytest.mark.parametrize(
    ("task", "key"),
    [
        ("text2text-generation", "generated_text"),
        ("summarization", "summary_text"),
        ("translation", "translation_text"),
    ],
)
def test_seq2seq_tasks(handler, run, task: str, key: str) -> None:
    h = handler("t5", task)
    batch = run(h, TEXTS, {"max_new_tokens": 5})
    extra = (
        {"finish_reason", "prompt_tokens", "completion_tokens"} if task == "text2text-generation" else set()
    )
    assert all(set(r) == {key} | extra and isinstance(r[key], str) for r in batch)
    if extra:  # /v1/completions reads them: "length" exactly when the budget was spent
        assert all(0 < r["completion_tokens"] <= 5 and r["prompt_tokens"] > 0 for r in batch)
        assert all((r["finish_reason"] == "length") == (r["completion_tokens"] == 5) for r in batch)
    assert any(r[key] for r in batch)
    for text, res in zip(TEXTS, batch, strict=True):
        assert run(h, text, {"max_new_tokens": 5}) == res


def test_prefixes_come_from_task_specific_params(handler) -> None:
    ids = lambda h, p: h.parse("Alice lives in Paris.", p)[0][0].data["input_ids"]  # noqa: E731
    tok = handler("t5", "translation").model.tokenizer
    expect = lambda prefix: tok(prefix + "Alice lives in Paris.")["input_ids"]  # noqa: E731
    assert ids(handler("t5", "translation"), {}) == expect("translate English to German: ")
    assert ids(handler("t5", "translation"), {"target_lang": "fr"}) == expect("translate English to French: ")
    assert ids(handler("t5", "summarization"), {}) == expect("summarize: ")
    assert ids(handler("t5", "text2text-generation"), {}) == expect("")
    with pytest.raises(InvalidInput, match=r"en->de.*not en->xx"):
        handler("t5", "translation").parse("hi", {"target_lang": "xx"})


def test_seq2seq_stop_and_validation(handler, run) -> None:
    h = handler("t5", "text2text-generation")
    full = run(h, "Alice lives in Paris.", {"max_new_tokens": 8})["generated_text"]
    stop = full[3:5]
    assert (
        run(h, "Alice lives in Paris.", {"max_new_tokens": 8, "stop": stop})["generated_text"]
        == full[: full.find(stop)]
    )
    with pytest.raises(InvalidInput, match="allowed"):
        run(handler("t5", "summarization"), "hi", {"source_lang": "en"})
    with pytest.raises(InvalidInput, match="512 tokens"):
        run(h, "Alice lives in Paris. " * 200)


def test_extractive_qa(handler, run) -> None:
    h = handler("bert-qa", "question-answering")
    inputs = [
        {"question": "Who lives in Paris?", "context": "Alice lives in Paris with her dog."},
        {"question": "Where?", "context": "Bob travelled from Rome to Vienna yesterday."},
    ]
    batch = run(h, inputs)
    for inp, res in zip(inputs, batch, strict=True):
        assert set(res) == {"answer", "score", "start", "end"}
        assert inp["context"][res["start"] : res["end"]] == res["answer"] and res["answer"]
        assert 0 < res["score"] <= 1
        single = run(h, inp)
        assert single["answer"] == res["answer"] and single["score"] == pytest.approx(res["score"], abs=1e-5)
    short = run(h, inputs[0], {"max_answer_len": 1})
    assert " " not in short["answer"].strip()


def test_generative_qa(handler, run) -> None:
    res = run(
        handler("t5", "question-answering"),
        {"question": "Who lives in Paris?", "context": "Alice lives in Paris."},
        {"max_new_tokens": 4},
    )
    assert set(res) == {"answer", "score", "start", "end"} and isinstance(res["answer"], str)


@pytest.mark.parametrize(
    ("inputs", "match"),
    [
        ("Who?", "must be an object"),
        ([], "non-empty list"),
        ({"question": "Who?"}, r"context' must be a non-empty string"),
        ({"question": "Who?", "context": "x", "extra": 1}, "unknown key"),
        ([{"question": "", "context": "x"}], "question' must be a non-empty string"),
    ],
)
def test_qa_validation(handler, run, inputs, match) -> None:
    with pytest.raises(InvalidInput, match=match):
        run(handler("bert-qa", "question-answering"), inputs)


def test_qa_too_many_and_too_long(handler, run) -> None:
    h = handler("bert-qa", "question-answering", batching={"max_items_per_request": 1})
    pair = {"question": "Who?", "context": "Alice lives in Paris."}
    with pytest.raises(TooManyItems):
        run(h, [pair, pair])
    long = {"question": "Who lives in Paris?", "context": "Alice lives in Paris. " * 60}
    with pytest.raises(InvalidInput, match="at most 128 tokens"):
        run(h, long)
    res = run(h, long, {"truncate": True})
    assert long["context"][res["start"] : res["end"]] == res["answer"]
