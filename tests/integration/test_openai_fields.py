"""Every OpenAI request field honoured or refused by name, through the official `openai` client against the real
app in-process (its httpx client is the app's TestClient): fields at their "off" value accepted, content a
text-only model cannot take refused, token-id inputs served, errors in the client's own field names, the
encoder-decoder's usage and finish reason, models.retrieve, truncation's per-model default and remedy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from openai import BadRequestError, NotFoundError, OpenAI

from hf_provider.server import openai_fields as F
from hf_provider.settings import load_settings

LONG = "the harbour was full of boats " * 200  # past MiniLM's 256 tokens (and the tiny LM's 256 positions)
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def client(tiny_models: dict[str, Path], minilm_path: Path, tmp_path_factory: pytest.TempPathFactory):
    from hf_provider.server.factory import build

    models: list[dict[str, Any]] = [
        {"name": "lm", "source": str(tiny_models["decoder"]), "tasks": ["text-generation"], "device": "cpu"},
        {
            "name": "lm-short",  # the same decoder with a per-model default max_tokens
            "source": str(tiny_models["decoder"]),
            "tasks": ["text-generation"],
            "device": "cpu",
            "defaults": {"text-generation": {"max_new_tokens": 3}},
        },
        {"name": "t5", "source": str(tiny_models["t5"]), "tasks": ["text2text-generation"], "device": "cpu"},
        {"name": "minilm", "source": str(minilm_path), "tasks": ["embeddings"], "device": "cpu"},
        {
            "name": "minilm-cut",  # truncation on by default for this model's OpenAI route
            "source": str(minilm_path),
            "tasks": ["embeddings"],
            "device": "cpu",
            "defaults": {"embeddings": {"truncate": True}},
        },
    ]
    home = tmp_path_factory.mktemp("home")
    app = build(load_settings({"models": models}, home=home))
    with TestClient(app, raise_server_exceptions=False) as http:
        yield OpenAI(base_url="http://testserver/v1", api_key="x", max_retries=0, http_client=http)


def _refused(call: Any, param: str, code: str = "unsupported_parameter") -> str:
    with pytest.raises(BadRequestError) as e:
        call()
    body = e.value.body
    assert e.value.status_code == 400 and body["code"] == code and body["param"] == param, body
    return str(body["message"])


# -- refused fields, by name; their "off" values accepted ----------------------------------------------------------
_SAMPLE = {  # a value that asks for something, per refused field
    "response_format": {"type": "json_object"},
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": "required",
    "parallel_tool_calls": "sometimes",
    "functions": [{"name": "f"}],
    "function_call": {"name": "f"},
    "audio": {"voice": "alloy", "format": "wav"},
    "modalities": ["text", "audio"],
    "prediction": {"type": "content", "content": "x"},
    "reasoning_effort": "high",
    "verbosity": "low",
    "web_search_options": {},
    "store": True,
    "metadata": {"k": "v"},
    "service_tier": "flex",
    "prompt_cache_key": "k",
    "prompt_cache_retention": "24h",
    "prompt_cache_options": {"a": 1},
    "moderation": {"x": 1},
    "n": 2,
    "logprobs": True,
    "top_logprobs": 2,
    "presence_penalty": 0.5,
    "frequency_penalty": 0.5,
    "logit_bias": {"5": 10},
    "best_of": 2,
    "suffix": "end",
}


@pytest.mark.parametrize("name", sorted(n for n, f in F.CHAT.items() if f.status == F.REFUSED))
def test_a_refused_chat_field_is_a_400_naming_it_and_its_off_value_is_accepted(
    client: OpenAI, name: str
) -> None:
    def ask(value: Any) -> Any:
        return client.chat.completions.create(model="lm", messages=HI, max_tokens=1, extra_body={name: value})

    message = _refused(lambda: ask(_SAMPLE[name]), name)
    assert name in message and "Input should" not in message
    for off in F.CHAT[name].off:
        assert ask(off).choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize("name", sorted(n for n, f in F.COMPLETIONS.items() if f.status == F.REFUSED))
def test_a_refused_completions_field_is_a_400_naming_it(client: OpenAI, name: str) -> None:
    def ask(value: Any) -> Any:
        return client.completions.create(model="lm", prompt="hi", max_tokens=1, extra_body={name: value})

    _refused(lambda: ask(_SAMPLE[name] if name != "logprobs" else 2), name)
    for off in F.COMPLETIONS[name].off:
        assert ask(off).choices[0].finish_reason in ("stop", "length")


def test_fields_clients_send_at_their_defaults_are_accepted_together(client: OpenAI) -> None:
    out = client.chat.completions.create(
        model="lm",
        messages=HI,
        max_tokens=2,
        logprobs=False,
        presence_penalty=0,
        frequency_penalty=0,
        top_logprobs=0,
        response_format={"type": "text"},
        tools=[],
        n=1,
        store=False,
        parallel_tool_calls=True,
        user="u",
        safety_identifier="s",
    )
    assert out.choices[0].message.content is not None


def test_a_field_no_openai_schema_has_is_refused_by_name(client: OpenAI) -> None:
    for call in (
        lambda: client.chat.completions.create(model="lm", messages=HI, extra_body={"frobnicate": 1}),
        lambda: client.completions.create(model="lm", prompt="x", extra_body={"frobnicate": 1}),
        lambda: client.embeddings.create(model="minilm", input="x", extra_body={"frobnicate": 1}),
    ):
        _refused(call, "frobnicate")


# -- content a text-only model cannot take -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        {"type": "file", "file": {"file_id": "f"}},
    ],
)
def test_image_audio_and_file_parts_are_refused_never_dropped(client: OpenAI, part: dict) -> None:
    mixed = [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, part]}]
    msg = _refused(
        lambda: client.chat.completions.create(model="lm", messages=mixed),
        "messages[0].content[1]",
        "unsupported_content",
    )
    assert "text-only" in msg
    alone = [{"role": "system", "content": "be brief"}, {"role": "user", "content": [part]}]
    _refused(
        lambda: client.chat.completions.create(model="lm", messages=alone),
        "messages[1].content[0]",
        "unsupported_content",
    )


def test_text_parts_are_joined(client: OpenAI) -> None:
    parts = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "tell me about "}, {"type": "text", "text": "boats"}],
        }
    ]
    whole = [{"role": "user", "content": "tell me about boats"}]
    a = client.chat.completions.create(model="lm", messages=parts, max_tokens=4, temperature=0)
    b = client.chat.completions.create(model="lm", messages=whole, max_tokens=4, temperature=0)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.usage.prompt_tokens == b.usage.prompt_tokens


# -- token-id inputs -----------------------------------------------------------------------------------------------
def test_token_id_prompts_generate_what_their_text_generates(
    client: OpenAI, tiny_models: dict[str, Path]
) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models["decoder"])
    texts = ["the harbour", "a city council"]
    ids = [tok(t)["input_ids"] for t in texts]
    by_text = client.completions.create(model="lm", prompt=texts, max_tokens=4, temperature=0)
    by_ids = client.completions.create(model="lm", prompt=ids, max_tokens=4, temperature=0)
    one = client.completions.create(model="lm", prompt=ids[0], max_tokens=4, temperature=0)
    assert [c.text for c in by_ids.choices] == [c.text for c in by_text.choices]
    assert one.choices[0].text == by_text.choices[0].text
    assert by_ids.usage.prompt_tokens == sum(map(len, ids))
    streamed = client.completions.create(model="lm", prompt=ids[0], max_tokens=4, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == one.choices[0].text
    _refused(
        lambda: client.completions.create(model="lm", prompt=[10**7], max_tokens=1), "prompt", "invalid_input"
    )
    _refused(
        lambda: client.completions.create(model="lm", prompt=ids[0], echo=True, max_tokens=1),
        "echo",
        "invalid_input",
    )


def test_token_id_embeddings_equal_the_text_embeddings(client: OpenAI, minilm_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_path)
    texts = ["A man is eating food.", "A cat sits on the mat."]
    ids = [tok(t)["input_ids"] for t in texts]
    by_text = client.embeddings.create(model="minilm", input=texts, encoding_format="float")
    by_ids = client.embeddings.create(model="minilm", input=ids, encoding_format="float")
    one = client.embeddings.create(model="minilm", input=ids[1], encoding_format="float")
    for a, b in zip(by_text.data, by_ids.data, strict=True):
        np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-5)
    np.testing.assert_allclose(one.data[0].embedding, by_text.data[1].embedding, atol=1e-5)
    assert by_ids.usage.prompt_tokens == sum(map(len, ids))
    msg = _refused(
        lambda: client.embeddings.create(model="minilm", input=[[1, 2], [-1]]), "input", "invalid_input"
    )
    assert "input[1]" in msg


# -- errors name the field as the client sent it -------------------------------------------------------------------
def test_errors_name_the_fields_the_client_sent(client: OpenAI) -> None:
    msg = _refused(lambda: client.embeddings.create(model="minilm", input=[]), "input", "invalid_request")
    assert "'input'" in msg and "inputs" not in msg
    msg = _refused(
        lambda: client.embeddings.create(model="minilm", input=[{"a": 1}]), "input", "invalid_request"
    )
    assert "Input should" not in msg and "input.str" not in msg
    msg = _refused(
        lambda: client.embeddings.create(model="minilm", input=["ok", ""]), "input", "invalid_input"
    )
    assert "input[1]" in msg and "inputs" not in msg
    msg = _refused(
        lambda: client.completions.create(model="lm", prompt="x", max_tokens=100000),
        "max_tokens",
        "invalid_input",
    )
    assert "'max_tokens'" in msg and "max_new_tokens" not in msg
    msg = _refused(
        lambda: client.chat.completions.create(model="lm", messages=HI, max_completion_tokens=100000),
        "max_completion_tokens",
        "invalid_input",
    )
    assert "max_new_tokens" not in msg
    msg = _refused(
        lambda: client.chat.completions.create(model="lm", messages=HI, temperature="hot"),
        "temperature",
        "invalid_request",
    )
    assert msg == "Invalid request: 'temperature' must be a number"
    msg = _refused(
        lambda: client.chat.completions.create(model="lm", messages=[{"role": "robot", "content": "x"}]),
        "messages[0].role",
        "invalid_request",
    )
    assert "'messages[0].role' must be one of" in msg
    _refused(
        lambda: client.completions.create(model="lm", prompt="x", stop=["a", 1]), "stop", "invalid_request"
    )


# -- the encoder-decoder on /v1/completions ------------------------------------------------------------------------
def test_t5_completions_report_usage_and_a_length_finish(client: OpenAI) -> None:
    out = client.completions.create(model="t5", prompt="translate English to German: the house", max_tokens=3)
    c, u = out.choices[0], out.usage
    assert u.prompt_tokens > 0 and 1 <= u.completion_tokens <= 3
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    # "length" exactly when the budget was spent without an end-of-sequence token
    assert c.finish_reason == ("length" if u.completion_tokens == 3 and c.finish_reason != "stop" else "stop")
    long = client.completions.create(model="t5", prompt="summarize: the house", max_tokens=1)
    assert long.choices[0].finish_reason in ("length", "stop") and long.usage.completion_tokens == 1


# -- models.retrieve -----------------------------------------------------------------------------------------------
def test_models_retrieve(client: OpenAI) -> None:
    m = client.models.retrieve("lm")
    assert m.id == "lm" and m.object == "model"
    with pytest.raises(NotFoundError) as e:
        client.models.retrieve("nope")
    assert e.value.body["code"] == "model_not_found"


# -- truncation: a remedy the route takes, and a per-model default -------------------------------------------------
def test_a_too_long_input_names_a_remedy_the_route_accepts(client: OpenAI) -> None:
    msg = _refused(lambda: client.embeddings.create(model="minilm", input=LONG), "input", "invalid_input")
    assert "truncate=true" in msg
    cut = client.embeddings.create(model="minilm", input=LONG, extra_body={"truncate": True})
    assert len(cut.data) == 1 and cut.usage.prompt_tokens <= 256
    default = client.embeddings.create(model="minilm-cut", input=LONG, encoding_format="float")
    np.testing.assert_allclose(
        default.data[0].embedding,
        client.embeddings.create(
            model="minilm", input=LONG, encoding_format="float", extra_body={"truncate": True}
        )
        .data[0]
        .embedding,
        atol=1e-5,
    )
    msg = _refused(
        lambda: client.completions.create(model="lm", prompt=LONG, max_tokens=2), "prompt", "invalid_input"
    )
    assert "truncate=true" in msg and "max_tokens=2" in msg
    out = client.completions.create(model="lm", prompt=LONG, max_tokens=2, extra_body={"truncate": True})
    assert out.usage.prompt_tokens == 256 - 2


# -- the default max_tokens -----------------------------------------------------------------------------------------
def test_max_tokens_defaults_to_64_or_the_models_own_default(client: OpenAI) -> None:
    out = client.completions.create(model="lm", prompt="the harbour", temperature=0)
    assert out.usage.completion_tokens <= 64
    assert out.choices[0].finish_reason == "stop" or out.usage.completion_tokens == 64
    short = client.completions.create(model="lm-short", prompt="the harbour", temperature=0)
    assert short.usage.completion_tokens <= 3
    assert short.choices[0].finish_reason == "stop" or short.usage.completion_tokens == 3
