"""POST /v1/responses through the official client's `responses.create`: text in and out, streamed as OpenAI's
events, text.format enforced, what is not served refused by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from openai import BadRequestError, OpenAI

from hf_provider.settings import load_settings


@pytest.fixture(scope="module")
def client(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    from hf_provider.server.factory import build

    models: list[dict[str, Any]] = [
        {"name": "lm", "source": str(tiny_models["decoder"]), "tasks": ["text-generation"], "device": "cpu"}
    ]
    app = build(load_settings({"models": models}, home=tmp_path_factory.mktemp("home")))
    with TestClient(app, raise_server_exceptions=False) as http:
        yield OpenAI(base_url="http://testserver/v1", api_key="x", max_retries=0, http_client=http)


def test_text_in_text_out_equals_the_chat_completion(client: OpenAI) -> None:
    resp = client.responses.create(
        model="lm", input="Tell me about boats.", max_output_tokens=6, temperature=0
    )
    chat = client.chat.completions.create(
        model="lm",
        messages=[{"role": "user", "content": "Tell me about boats."}],
        max_tokens=6,
        temperature=0,
    )
    assert resp.object == "response" and resp.id.startswith("resp_")
    assert resp.output_text == chat.choices[0].message.content
    assert resp.usage.input_tokens == chat.usage.prompt_tokens
    assert resp.usage.output_tokens == chat.usage.completion_tokens
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    if chat.choices[0].finish_reason == "length":
        assert resp.status == "incomplete" and resp.incomplete_details.reason == "max_output_tokens"
    else:
        assert resp.status == "completed"
    item = resp.output[0]
    assert item.type == "message" and item.role == "assistant" and item.content[0].type == "output_text"


def test_instructions_and_message_items(client: OpenAI) -> None:
    items = [
        {
            "role": "user",
            "content": [{"type": "input_text", "text": "hello "}, {"type": "input_text", "text": "there"}],
        },
        {"role": "assistant", "content": [{"type": "output_text", "text": "hi"}]},
        {"type": "message", "role": "user", "content": "and now?"},
    ]
    resp = client.responses.create(
        model="lm", instructions="Be brief.", input=items, max_output_tokens=4, temperature=0
    )
    chat = client.chat.completions.create(
        model="lm",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello there"},
            {"role": "assistant", "content": "hi"},
            {"role": "user", "content": "and now?"},
        ],
        max_tokens=4,
        temperature=0,
    )
    assert resp.output_text == chat.choices[0].message.content


def test_streamed_events_in_openais_order(client: OpenAI) -> None:
    kw = dict(model="lm", input="The harbour", max_output_tokens=8, temperature=0)
    whole = client.responses.create(**kw)
    events = list(client.responses.create(stream=True, **kw))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:-1] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(1, len(events) + 1))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == whole.output_text == events[-1].response.output_text
    assert events[-1].response.usage.output_tokens == whole.usage.output_tokens


def test_text_format_json_schema_is_enforced(client: OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"enum": ["Oslo", "Rome"]}, "n": {"type": "integer", "maximum": 99}},
        "required": ["city", "n"],
        "additionalProperties": False,
    }
    resp = client.responses.create(
        model="lm",
        input="JSON please",
        max_output_tokens=100,
        temperature=1.0,
        text={"format": {"type": "json_schema", "name": "x", "schema": schema, "strict": True}},
    )
    jsonschema.validate(json.loads(resp.output_text), schema)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"store": True}, "store"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"tools": [{"type": "function", "name": "f", "parameters": {}}]}, "tools"),
        ({"reasoning": {"effort": "high"}}, "reasoning"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]}, "input[0]"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:,"}]}]},
            "input[0].content[0]",
        ),
        ({"max_output_tokens": 100000}, "max_output_tokens"),
        (
            {"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "frob"}}}},
            "text.format",
        ),
    ],
)
def test_what_is_not_served_is_refused_by_name(client: OpenAI, kwargs: dict, param: str) -> None:
    args = {"model": "lm", "input": "hi", **kwargs}
    with pytest.raises(BadRequestError) as e:
        client.responses.create(**args)
    assert e.value.body["param"] == param, e.value.body
    ok = client.responses.create(
        model="lm", input="hi", max_output_tokens=1, store=False, include=[], tools=[]
    )
    assert ok.status in ("completed", "incomplete")
