"""Tool calling through the official `openai` client on a tiny decoder with a Hermes-style chat template
(hf_provider.testing.chat_models): required and named choices enforced so the arguments always validate, calls
parsed into OpenAI's `tool_calls` (streamed as deltas), tool messages in the conversation."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from openai import BadRequestError, OpenAI

from hf_provider.settings import load_settings
from hf_provider.testing.chat_models import tool_chat_model
from hf_provider.testing.models import build_sized_gpt2


def _params(rng: random.Random) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for i in range(rng.randint(1, 3)):
        kind = rng.choice(["string", "integer", "enum", "boolean", "array"])
        if kind == "string":
            props[f"s{i}"] = {"type": "string", "maxLength": rng.randint(1, 8)}
        elif kind == "integer":
            props[f"i{i}"] = {"type": "integer", "minimum": 0, "maximum": 999}
        elif kind == "enum":
            props[f"e{i}"] = {"enum": ["celsius", "fahrenheit"]}
        elif kind == "boolean":
            props[f"b{i}"] = {"type": "boolean"}
        else:
            props[f"a{i}"] = {"type": "array", "items": {"type": "integer", "maximum": 9}, "maxItems": 3}
    return {"type": "object", "properties": props, "required": sorted(props), "additionalProperties": False}


def _tools(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "type": "function",
            "function": {"name": f"fn_{seed}_{k}", "description": "d", "parameters": _params(rng)},
        }
        for k in range(rng.randint(1, 3))
    ]


@pytest.fixture(scope="module")
def client(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    from hf_provider.server.factory import build

    long_lm = build_sized_gpt2(tiny_models["decoder"].parent, 64, 2, positions=2048)  # tool lists are long
    tools_lm = str(tool_chat_model(long_lm))
    models: list[dict[str, Any]] = [
        {"name": "tlm", "source": tools_lm, "tasks": ["text-generation"], "device": "cpu"},
        {
            "name": "tlm-cb",
            "source": tools_lm,
            "tasks": ["text-generation"],
            "device": "cpu",
            "batching": {"generation": "continuous"},
        },
        {"name": "lm", "source": str(tiny_models["decoder"]), "tasks": ["text-generation"], "device": "cpu"},
    ]
    app = build(load_settings({"models": models}, home=tmp_path_factory.mktemp("home")))
    with TestClient(app, raise_server_exceptions=False) as http:
        yield OpenAI(base_url="http://testserver/v1", api_key="x", max_retries=0, http_client=http)


MSG = [{"role": "user", "content": "What is the weather in Oslo?"}]


def _check(call: Any, tools: list[dict[str, Any]]) -> None:
    by_name = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    assert call.type == "function" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), by_name[call.function.name])


def test_required_arguments_validate_100_of_100(client: OpenAI) -> None:
    for i in range(100):
        tools = _tools(i)
        out = client.chat.completions.create(
            model="tlm",
            messages=MSG,
            tools=tools,
            tool_choice="required",
            parallel_tool_calls=False,
            max_tokens=150,
            temperature=1.0,
            seed=i,
        )
        c = out.choices[0]
        assert c.finish_reason == "tool_calls", (i, c)
        assert c.message.content is None and len(c.message.tool_calls) == 1
        _check(c.message.tool_calls[0], tools)


def test_required_with_parallel_calls_and_a_named_choice(client: OpenAI) -> None:
    tools = _tools(7) + _tools(8)
    out = client.chat.completions.create(
        model="tlm",
        messages=MSG,
        tools=tools,
        tool_choice="required",
        max_tokens=200,
        temperature=1.0,
        seed=3,
    )
    assert out.choices[0].message.tool_calls
    for call in out.choices[0].message.tool_calls:
        _check(call, tools)
    name = tools[-1]["function"]["name"]
    named = client.chat.completions.create(
        model="tlm-cb",
        messages=MSG,
        tools=tools,
        max_tokens=150,
        temperature=1.0,
        seed=4,
        tool_choice={"type": "function", "function": {"name": name}},
    )
    (call,) = named.choices[0].message.tool_calls
    assert call.function.name == name
    _check(call, tools)


def test_streamed_tool_calls_come_as_openai_deltas(client: OpenAI) -> None:
    for i in range(20):
        tools = _tools(100 + i)
        chunks = list(
            client.chat.completions.create(
                model="tlm-cb",
                messages=MSG,
                tools=tools,
                tool_choice="required",
                parallel_tool_calls=False,
                max_tokens=150,
                temperature=1.0,
                seed=i,
                stream=True,
            )
        )
        deltas = [d for ch in chunks if ch.choices for d in (ch.choices[0].delta.tool_calls or [])]
        assert deltas and deltas[0].id and deltas[0].type == "function" and deltas[0].function.name
        args = "".join(d.function.arguments or "" for d in deltas)
        by_name = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
        jsonschema.validate(json.loads(args), by_name[deltas[0].function.name])
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        assert not any(ch.choices and ch.choices[0].delta.content for ch in chunks)


def test_tool_messages_continue_a_conversation(client: OpenAI) -> None:
    tools = _tools(1)
    name = tools[0]["function"]["name"]
    convo = [
        *MSG,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": name, "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "12 degrees"},
    ]
    out = client.chat.completions.create(
        model="tlm", messages=convo, tools=tools, max_tokens=5, tool_choice="none"
    )
    assert out.choices[0].message.tool_calls is None and out.choices[0].finish_reason in ("stop", "length")
    with pytest.raises(BadRequestError) as e:
        bad = [
            *convo[:1],
            {**convo[1], "tool_calls": [{"type": "function", "function": {"name": name, "arguments": "[1"}}]},
        ]
        client.chat.completions.create(model="tlm", messages=bad, tools=tools)
    assert e.value.body["param"] == "messages[1].tool_calls[0]"


def test_a_model_whose_template_ignores_tools_refuses_them(client: OpenAI) -> None:
    with pytest.raises(BadRequestError) as e:
        client.chat.completions.create(model="lm", messages=MSG, tools=_tools(1))
    assert e.value.body["param"] == "tools"
    with pytest.raises(BadRequestError) as e:
        client.chat.completions.create(
            model="tlm",
            messages=MSG,
            tools=_tools(1),
            tool_choice="required",
            response_format={"type": "json_object"},
        )
    assert e.value.body["param"] == "response_format"
