"""logprobs, n, best_of, seed, stop, penalties and logit_bias through the official `openai` client, on static
batching and on the continuous engine (the same tiny decoder served both ways)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from openai import BadRequestError, OpenAI

from hf_provider.settings import load_settings

MODES = ["lm", "lm-cb"]  # static generate, continuous engine


@pytest.fixture(scope="module")
def client(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, reference):
    # after `reference`: the server loads its models on a thread, and two from_pretrained calls at once in one
    # process share transformers' meta-device initialisation
    from hf_provider.server.factory import build

    src = str(tiny_models["decoder"])
    models: list[dict[str, Any]] = [
        {"name": "lm", "source": src, "tasks": ["text-generation"], "device": "cpu"},
        {
            "name": "lm-cb",
            "source": src,
            "tasks": ["text-generation"],
            "device": "cpu",
            "batching": {"generation": "continuous"},
        },
    ]
    app = build(load_settings({"models": models}, home=tmp_path_factory.mktemp("home")))
    with TestClient(app, raise_server_exceptions=False) as http:
        yield OpenAI(base_url="http://testserver/v1", api_key="x", max_retries=0, http_client=http)


@pytest.fixture(scope="module")
def reference(tiny_models: dict[str, Path]):
    """transformers' own greedy `generate` with its scores, in float32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_models["decoder"]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

    def run(ids: list[int], steps: int) -> tuple[list[int], list[torch.Tensor]]:
        with torch.inference_mode():
            out = model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=steps,
                do_sample=False,
                num_beams=1,
                output_scores=True,
                return_dict_in_generate=True,
                pad_token_id=tok.pad_token_id,
            )
        tokens = out.sequences[0, len(ids) :].tolist()
        return tokens, [torch.log_softmax(s[0].float(), -1) for s in out.scores]

    return tok, run


def _bad(call: Any, param: str) -> None:
    with pytest.raises(BadRequestError) as e:
        call()
    assert e.value.status_code == 400 and e.value.body["param"] == param, e.value.body


# -- logprobs ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", MODES)
def test_greedy_completion_logprobs_equal_log_softmax_of_generates_scores(
    client: OpenAI, reference, model: str
) -> None:
    tok, run = reference
    prompt = "the harbour was"
    out = client.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0, logprobs=3)
    lp = out.choices[0].logprobs
    tokens, scores = run(tok(prompt)["input_ids"], 8)
    eos = tok.eos_token_id
    text_tokens = [t for t in tokens if t != eos][: len(lp.tokens)]
    assert len(lp.tokens) == len(text_tokens) > 0
    for step, (t, got) in enumerate(zip(text_tokens, lp.token_logprobs, strict=True)):
        assert lp.tokens[step] == tok.decode([t])
        assert got == pytest.approx(scores[step][t].item(), abs=1e-4)
        top = scores[step].topk(3)
        expected = {
            tok.decode([i]): v for i, v in zip(top.indices.tolist(), top.values.tolist(), strict=True)
        }
        assert set(lp.top_logprobs[step]) == set(expected)
        for k, v in lp.top_logprobs[step].items():
            assert v == pytest.approx(expected[k], abs=1e-4)
    assert lp.text_offset[0] == 0 and "".join(lp.tokens) == out.choices[0].text


@pytest.mark.parametrize("model", MODES)
def test_greedy_chat_logprobs_equal_log_softmax_of_generates_scores(
    client: OpenAI, reference, model: str
) -> None:
    tok, run = reference
    messages = [{"role": "user", "content": "Tell me about the harbour."}]
    out = client.chat.completions.create(
        model=model, messages=messages, max_tokens=6, temperature=0, logprobs=True, top_logprobs=2
    )
    content = out.choices[0].logprobs.content
    ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    tokens, scores = run(list(ids), 6)
    assert len(content) > 0
    for step, c in enumerate(content):
        assert c.token == tok.decode([tokens[step]])
        assert c.logprob == pytest.approx(scores[step][tokens[step]].item(), abs=1e-4)
        assert len(c.top_logprobs) == 2 and c.top_logprobs[0].logprob >= c.top_logprobs[1].logprob
        assert c.bytes == list(c.token.encode())
    without = client.chat.completions.create(model=model, messages=messages, max_tokens=6, temperature=0)
    assert without.choices[0].logprobs is None
    assert without.choices[0].message.content == out.choices[0].message.content


@pytest.mark.parametrize("model", MODES)
def test_echo_with_logprobs_scores_the_prompt_as_evaluation_harnesses_ask(
    client: OpenAI, reference, model: str
) -> None:
    """lm-eval's loglikelihood request: echo=True, logprobs, max_tokens=1, temperature 0."""
    tok, _ = reference
    prompt = "the harbour was full of"
    out = client.completions.create(
        model=model, prompt=prompt, echo=True, logprobs=2, max_tokens=1, temperature=0
    )
    lp = out.choices[0].logprobs
    ids = tok(prompt)["input_ids"]
    from transformers import AutoModelForCausalLM

    with torch.inference_mode():
        m = AutoModelForCausalLM.from_pretrained(tok.name_or_path, dtype=torch.float32).eval()
        ref = torch.log_softmax(m(torch.tensor([ids])).logits[0].float(), -1)
    assert lp.tokens[: len(ids)] == [tok.decode([t]) for t in ids]
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    for pos in range(1, len(ids)):
        assert lp.token_logprobs[pos] == pytest.approx(ref[pos - 1, ids[pos]].item(), abs=1e-4)
        assert len(lp.top_logprobs[pos]) <= 2
    assert out.choices[0].text.startswith(prompt) and "".join(lp.tokens) == out.choices[0].text
    assert lp.text_offset[len(ids)] == len("".join(lp.tokens[: len(ids)]))


# -- n, seed, best_of ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", MODES)
def test_n_3_with_a_seed_returns_3_choices_reproducibly(client: OpenAI, model: str) -> None:
    kw = dict(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=8, n=3, seed=11, temperature=1.0
    )
    first = client.chat.completions.create(**kw)
    again = client.chat.completions.create(**kw)
    texts = [c.message.content for c in first.choices]
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert texts == [c.message.content for c in again.choices]
    assert len(set(texts)) > 1  # three draws, not one repeated
    assert first.usage.prompt_tokens == client.chat.completions.create(**{**kw, "n": 1}).usage.prompt_tokens
    other = client.chat.completions.create(**{**kw, "seed": 12})
    assert [c.message.content for c in other.choices] != texts


@pytest.mark.parametrize("model", MODES)
def test_completions_n_orders_choices_by_prompt(client: OpenAI, model: str) -> None:
    out = client.completions.create(model=model, prompt=["a", "b c"], n=2, max_tokens=3, temperature=0)
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    assert out.choices[0].text == out.choices[1].text  # greedy: the same text twice per prompt
    single = client.completions.create(model=model, prompt="b c", max_tokens=3, temperature=0)
    assert out.choices[2].text == single.choices[0].text


@pytest.mark.parametrize("model", MODES)
def test_best_of_returns_the_rows_with_the_highest_logprob_per_token(client: OpenAI, model: str) -> None:
    kw = dict(model=model, prompt="the city", max_tokens=6, temperature=1.0, seed=5)
    every = client.completions.create(n=3, logprobs=0, **kw)
    mean = {c.text: sum(c.logprobs.token_logprobs) for c in every.choices}
    best = client.completions.create(n=1, best_of=3, **kw)
    assert len(best.choices) == 1 and best.choices[0].logprobs is None
    assert best.usage.completion_tokens == every.usage.completion_tokens  # all three rows were generated
    per_token = {
        c.text: (sum(c.logprobs.token_logprobs) + 0.0) / max(1, len(c.logprobs.token_logprobs))
        for c in every.choices
    }
    assert best.choices[0].text in mean
    assert per_token[best.choices[0].text] >= min(per_token.values())
    _bad(lambda: client.completions.create(n=3, best_of=2, **kw), "best_of")


# -- penalties and bias --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", MODES)
def test_logit_bias_forces_and_forbids_tokens(client: OpenAI, reference, model: str) -> None:
    tok, _ = reference
    forced = tok.convert_tokens_to_ids("$") if "$" in tok.get_vocab() else 5
    out = client.completions.create(
        model=model, prompt="the harbour", max_tokens=4, temperature=0, logit_bias={str(forced): 100}
    )
    assert out.choices[0].text == tok.decode([forced] * 4)
    plain = client.completions.create(
        model=model, prompt="the harbour", max_tokens=1, temperature=0, logprobs=0
    )
    first = plain.choices[0].logprobs.tokens[0]
    first_id = tok.convert_tokens_to_ids(tok.tokenize(first))[0] if first else None
    banned = client.completions.create(
        model=model, prompt="the harbour", max_tokens=1, temperature=0, logit_bias={str(first_id): -100}
    )
    assert banned.choices[0].text != plain.choices[0].text
    _bad(lambda: client.completions.create(model=model, prompt="x", logit_bias={"999999": 1}), "logit_bias")
    _bad(lambda: client.completions.create(model=model, prompt="x", logit_bias={"1": 101}), "logit_bias")


@pytest.mark.parametrize("model", MODES)
def test_frequency_and_presence_penalties_break_repetition(client: OpenAI, model: str) -> None:
    def repeats(**kw: Any) -> int:
        out = client.completions.create(
            model=model, prompt="the harbour", max_tokens=12, temperature=0, logprobs=0, **kw
        )
        tokens = out.choices[0].logprobs.tokens
        return len(tokens) - len(set(tokens))

    plain = repeats()
    assert plain > 0  # the tiny random model repeats itself greedily
    assert repeats(frequency_penalty=2.0) < plain
    assert repeats(presence_penalty=2.0) < plain
    _bad(lambda: client.completions.create(model=model, prompt="x", presence_penalty=3), "presence_penalty")


# -- stop, max_completion_tokens, what a stream cannot carry -------------------------------------------------------
def test_stop_max_completion_tokens_and_stream_limits(client: OpenAI) -> None:
    msgs = [{"role": "user", "content": "hi"}]
    whole = (
        client.completions.create(model="lm", prompt="the harbour", max_tokens=10, temperature=0)
        .choices[0]
        .text
    )
    stops = [whole[3:5], "zzzz", "yyyy", "xxxx"]
    cut = client.completions.create(
        model="lm", prompt="the harbour", max_tokens=10, temperature=0, stop=stops
    )
    assert cut.choices[0].text == whole[: whole.index(stops[0])] and cut.choices[0].finish_reason == "stop"
    _bad(lambda: client.completions.create(model="lm", prompt="x", stop=["a", "b", "c", "d", "e"]), "stop")
    out = client.chat.completions.create(model="lm", messages=msgs, max_completion_tokens=2, max_tokens=50)
    assert out.usage.completion_tokens <= 2
    _bad(lambda: client.chat.completions.create(model="lm", messages=msgs, n=2, stream=True), "n")
    _bad(
        lambda: client.chat.completions.create(model="lm", messages=msgs, logprobs=True, stream=True),
        "logprobs",
    )
    _bad(lambda: client.chat.completions.create(model="lm", messages=msgs, top_logprobs=2), "top_logprobs")
    _bad(lambda: client.completions.create(model="lm", prompt="x", best_of=2, stream=True), "best_of")
    _bad(lambda: client.chat.completions.create(model="lm", messages=msgs, n=17), "n")
