"""The OpenAI-compatible API through the official `openai` client, against the real server on loopback."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import numpy as np
import pytest
from openai import BadRequestError, OpenAI


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=60.0) as c:
        yield c


SENTENCES = ["A man is eating food.", "The new movie is awesome.", "A cat sits on the mat."]


def test_models_list_has_configured_names(client: OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"minilm", "lm", "t5", "cls"} <= ids


def test_embeddings_single_and_list(client: OpenAI) -> None:
    one = client.embeddings.create(model="minilm", input=SENTENCES[0])
    assert len(one.data) == 1 and one.data[0].index == 0
    v = np.array(one.data[0].embedding)
    assert v.shape == (384,)
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-4)
    assert one.usage.prompt_tokens > 0 and one.usage.total_tokens == one.usage.prompt_tokens

    many = client.embeddings.create(model="minilm", input=SENTENCES)
    assert [d.index for d in many.data] == [0, 1, 2]
    assert many.usage.prompt_tokens > one.usage.prompt_tokens
    # the same sentence gives the same vector alone or in a batch
    np.testing.assert_allclose(np.array(many.data[0].embedding), v, atol=1e-5)
    # and real semantics: different sentences are not identical
    assert not np.allclose(many.data[1].embedding, many.data[2].embedding)


def test_embeddings_base64_decodes_to_the_float_vectors(client: OpenAI) -> None:
    floats = client.embeddings.create(model="minilm", input=SENTENCES, encoding_format="float")
    # an explicit base64 request is returned undecoded by the client: read the raw body
    raw = client.embeddings.with_raw_response.create(
        model="minilm", input=SENTENCES, encoding_format="base64"
    )
    body = raw.http_response.json()
    for f, b in zip(floats.data, body["data"], strict=True):
        assert isinstance(b["embedding"], str)
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        np.testing.assert_allclose(decoded, np.array(f.embedding, dtype=np.float32), rtol=1e-6, atol=1e-7)
    # without encoding_format the client asks for base64 itself and decodes it: same vectors
    default = client.embeddings.create(model="minilm", input=SENTENCES)
    for f, d in zip(floats.data, default.data, strict=True):
        np.testing.assert_allclose(np.array(d.embedding), np.array(f.embedding), atol=1e-6)


def test_embeddings_dimensions_truncate_and_renormalize(client: OpenAI) -> None:
    full = client.embeddings.create(model="minilm", input=SENTENCES[1])
    short = client.embeddings.create(model="minilm", input=SENTENCES[1], dimensions=64)
    v = np.array(short.data[0].embedding)
    assert v.shape == (64,)
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-4)
    head = np.array(full.data[0].embedding[:64])
    np.testing.assert_allclose(v, head / np.linalg.norm(head), atol=1e-5)


def test_completions_non_stream(client: OpenAI) -> None:
    out = client.completions.create(model="lm", prompt="the harbour", max_tokens=5, temperature=0)
    assert out.object == "text_completion" and len(out.choices) == 1
    assert isinstance(out.choices[0].text, str)
    assert out.choices[0].finish_reason in ("stop", "length")
    u = out.usage
    assert u.prompt_tokens > 0 and 0 < u.completion_tokens <= 5
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


def test_completions_list_of_prompts(client: OpenAI) -> None:
    out = client.completions.create(model="lm", prompt=["one", "two words"], max_tokens=3, temperature=0)
    assert [c.index for c in out.choices] == [0, 1]
    assert all(isinstance(c.text, str) for c in out.choices)


def test_completions_stream_matches_non_stream(client: OpenAI) -> None:
    kw = dict(model="lm", prompt="the city council", max_tokens=8, temperature=0)
    whole = client.completions.create(**kw).choices[0].text
    parts = [c.choices[0].text for c in client.completions.create(stream=True, **kw)]
    assert "".join(parts) == whole


MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Tell me about the harbour."},
]


def test_chat_non_stream(client: OpenAI) -> None:
    out = client.chat.completions.create(model="lm", messages=MESSAGES, max_tokens=6, temperature=0)
    msg = out.choices[0].message
    assert msg.role == "assistant" and isinstance(msg.content, str)
    assert out.usage.prompt_tokens > 0 and 0 < out.usage.completion_tokens <= 6
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


def test_chat_stream_equals_greedy_non_stream(client: OpenAI) -> None:
    kw = dict(model="lm", messages=MESSAGES, max_tokens=12, temperature=0)
    whole = client.chat.completions.create(**kw).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, **kw))
    assert len(chunks) >= 3  # role chunk, at least one content chunk, final chunk
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason is not None
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == whole
    assert sum(1 for c in chunks if c.choices[0].delta.content) >= 1


def test_chat_stream_several_concurrently_each_equal_greedy(client: OpenAI) -> None:
    """Streams batched together still each deliver their own text."""
    from concurrent.futures import ThreadPoolExecutor

    prompts = [f"Tell me about item {i}." for i in range(4)]

    def greedy(p: str) -> str:
        return (
            client.chat.completions.create(
                model="lm", messages=[{"role": "user", "content": p}], max_tokens=8, temperature=0
            )
            .choices[0]
            .message.content
        )

    def streamed(p: str) -> str:
        s = client.chat.completions.create(
            model="lm", messages=[{"role": "user", "content": p}], max_tokens=8, temperature=0, stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in s)

    expected = [greedy(p) for p in prompts]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(streamed, prompts))
    assert got == expected


def test_completions_stream_echo_starts_with_the_prompt(client: OpenAI) -> None:
    kw = dict(model="lm", prompt="the river", max_tokens=4, temperature=0)
    whole = client.completions.create(echo=True, **kw).choices[0].text
    streamed = "".join(c.choices[0].text for c in client.completions.create(stream=True, echo=True, **kw))
    assert whole.startswith("the river") and streamed == whole


@pytest.mark.parametrize("max_tokens", [2, 40])
def test_streamed_finish_reason_matches_non_stream(client: OpenAI, max_tokens: int) -> None:
    args = {"model": "lm", "prompt": "The weather in Paris", "max_tokens": max_tokens, "temperature": 0}
    full = client.completions.create(**args)
    chunks = list(client.completions.create(**args, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == full.choices[0].text
    assert chunks[-1].choices[0].finish_reason == full.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    chat = {
        "model": "lm",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    reply = client.chat.completions.create(**chat)
    last = list(client.chat.completions.create(**chat, stream=True))[-1]
    assert last.choices[0].finish_reason == reply.choices[0].finish_reason


def test_stream_options_include_usage_adds_a_usage_chunk(client: OpenAI) -> None:
    msgs = [{"role": "user", "content": "hi"}]
    chunks = list(
        client.chat.completions.create(
            model="lm", messages=msgs, max_tokens=5, stream=True, stream_options={"include_usage": True}
        )
    )
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 5 and last.usage.total_tokens == last.usage.prompt_tokens + 5
    assert all(c.usage is None for c in chunks[:-1])
    plain = list(client.chat.completions.create(model="lm", messages=msgs, max_tokens=5, stream=True))
    assert all(c.usage is None for c in plain) and plain[-1].choices[0].finish_reason == "length"
    done = list(
        client.completions.create(
            model="lm", prompt="hi", max_tokens=3, stream=True, stream_options={"include_usage": True}
        )
    )
    assert done[-1].usage.completion_tokens == 3


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"store": True}, "store"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),  # without stream=true
    ],
)
def test_unimplemented_openai_fields_are_refused_not_ignored(
    client: OpenAI, kwargs: dict, param: str
) -> None:
    with pytest.raises(BadRequestError) as e:
        client.chat.completions.create(model="lm", messages=[{"role": "user", "content": "hi"}], **kwargs)
    assert e.value.status_code == 400 and e.value.body["param"] == param
    with pytest.raises(BadRequestError):
        client.completions.create(model="lm", prompt="hi", suffix="the end")
