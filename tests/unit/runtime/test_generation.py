from __future__ import annotations

import pytest
import torch

from hf_provider.errors import InvalidInput
from hf_provider.runtime.tasks.generation import BatchStreamer
from hf_provider.testing.rows import SinkRows

PROMPTS = ["Alice lives in", "Hello", "The weather in Rome was great today, said"]
KEYS = {"generated_text", "finish_reason", "prompt_tokens", "completion_tokens"}


def _collect(n: int) -> tuple[list[list[str | None]], list]:
    got: list[list[str | None]] = [[] for _ in range(n)]
    return got, [g.append for g in got]


def test_batch_equals_single_and_counts(handler, run) -> None:
    h = handler("decoder", "text-generation")
    batch = run(h, PROMPTS, {"max_new_tokens": 6})
    for prompt, res in zip(PROMPTS, batch, strict=True):
        assert set(res) == KEYS
        assert res == run(h, prompt, {"max_new_tokens": 6})
        assert res["completion_tokens"] == 6 and res["finish_reason"] == "length"
        assert res["prompt_tokens"] == len(h.model.tokenizer(prompt)["input_ids"])
        assert not res["generated_text"].startswith(prompt)


def test_streaming_deltas_concatenate(handler, run) -> None:
    h = handler("decoder", "text-generation")
    for params in ({"max_new_tokens": 12}, {"max_new_tokens": 12, "temperature": 1.5, "seed": 3}):
        got, sinks = _collect(len(PROMPTS))
        res = run(h, PROMPTS, params, sinks=sinks)
        for deltas, r in zip(got, res, strict=True):
            assert deltas[-1] is None and None not in deltas[:-1]
            assert "".join(deltas[:-1]) == r["generated_text"]
            assert all(d for d in deltas[:-1])  # no empty deltas
        assert [r["generated_text"] for r in res] == [r["generated_text"] for r in run(h, PROMPTS, params)]


def test_stop_sequences_cut(handler, run) -> None:
    h = handler("decoder", "text-generation")
    full = run(h, "Hello", {"max_new_tokens": 12})["generated_text"]
    stop = full[4:6]
    expected = full[: full.find(stop)]
    res = run(h, "Hello", {"max_new_tokens": 12, "stop": [stop, "zzzz"]})
    assert res["generated_text"] == expected and res["finish_reason"] == "stop"
    assert res["completion_tokens"] < 12
    got, sinks = _collect(1)
    run(h, ["Hello"], {"max_new_tokens": 12, "stop": stop}, sinks=sinks)
    assert "".join(got[0][:-1]) == expected


def test_streamer_multibyte_and_eos(loaded) -> None:
    tok = loaded("decoder").tokenizer
    text = "héllo wörld ☃ 日本"
    ids = tok(text)["input_ids"]
    eos = tok.eos_token_id
    got, sinks = _collect(2)
    rows = SinkRows(sinks)
    s = BatchStreamer(tok, 2, {eos}, stops=("wör",), control=rows)
    s.put(torch.tensor([[5], [5]]))  # the prompt
    for t in ids:
        s.put(torch.tensor([t, t]))
    s.put(torch.tensor([eos, eos]))
    s.end()
    rows.close()
    for deltas in got:
        assert all("\ufffd" not in d for d in deltas[:-1])
    assert s.results()[0][:2] == ("héllo ", "stop")
    assert "".join(got[0][:-1]) == "héllo "
    s2 = BatchStreamer(tok, 1, {eos})
    s2.put(torch.tensor([[5]]))
    for t in [*ids, eos]:
        s2.put(torch.tensor([t]))
    s2.end()
    assert s2.results() == [(text, "stop", len(ids) + 1)]


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 5000}, "max_new_tokens"),
        ({"max_new_tokens": 255}, "max_new_tokens"),
        ({"max_new_tokens": "5"}, "integer"),
        ({"max_new_tokens": True}, "integer"),
        ({"temperature": -1}, "temperature"),
        ({"temperature": 6}, "temperature"),
        ({"temperature": "hot"}, "number"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"do_sample": "yes"}, "boolean"),
        ({"stop": 3}, "stop"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "at most 4"),
        ({"stop": [""]}, "empty"),
        ({"seed": 1.5}, "integer"),
        (
            {"beams": 2},
            "allowed: do_sample, frequency_penalty, grammar, logit_bias, logprobs, max_new_tokens, "
            "presence_penalty, prompt_logprobs, seed, stop, temperature, top_k, top_p, truncate",
        ),
    ],
)
def test_bad_generation_params(handler, run, params, match) -> None:
    with pytest.raises(InvalidInput, match=match):
        run(handler("decoder", "text-generation"), "Hello", params)


def test_prompt_length_limit(handler, run) -> None:
    h = handler("decoder", "text-generation")
    long = "Alice lives in Paris. " * 60
    with pytest.raises(InvalidInput, match=r"tokens long.*max_new_tokens=8 must fit in 256"):
        run(h, long, {"max_new_tokens": 8})
    res = run(h, long, {"max_new_tokens": 8, "truncate": True})
    assert res["prompt_tokens"] == 248


def test_batch_key_separates_incompatible_params(handler) -> None:
    h = handler("decoder", "text-generation")
    keys = [
        h.batch_key(h.parse("hi", p)[1])
        for p in ({}, {"max_new_tokens": 64}, {"temperature": 0}, {"max_new_tokens": 8}, {"temperature": 0.7})
    ]
    assert keys[0] == keys[1] == keys[2]
    assert len({keys[0], keys[3], keys[4]}) == 3


def test_defaults_apply(handler, run) -> None:
    h = handler("decoder", "text-generation", defaults={"max_new_tokens": 3})
    assert run(h, "Hello")["completion_tokens"] == 3
