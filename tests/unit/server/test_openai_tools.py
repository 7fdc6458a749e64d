"""Tool calls parsed from the common template families' output, streamed replies split at a call, the grammar
that enforces required / named choices (server/openai_tools.py)."""

from __future__ import annotations

import json

import pytest

from hf_provider.errors import InvalidInput
from hf_provider.server import openai_tools as T

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}},
        },
    },
]
HERMES = "{% if tools %}<tool_call>{% endif %}"
LLAMA = "<|start_header_id|>{% if tools %}{{ tools }}{% endif %}"
MISTRAL = "[AVAILABLE_TOOLS]{{ tools }}[TOOL_CALLS]"


def _plan(template: str, choice: object = "auto", parallel: bool | None = None) -> T.ToolPlan:
    p = T.plan(TOOLS, choice, parallel, template)
    assert p is not None
    return p


def test_families_are_told_from_the_template() -> None:
    assert [_plan(t).family for t in (HERMES, LLAMA, MISTRAL)] == [T.HERMES, T.LLAMA3, T.MISTRAL]


def test_hermes_blocks_become_tool_calls_and_the_rest_content() -> None:
    text = (
        'Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
        '<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>'
    )
    content, calls = T.parse(_plan(HERMES), text)
    assert content == "Let me check."
    assert [c["function"]["name"] for c in calls] == ["get_weather", "add"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Oslo"}
    assert all(c["type"] == "function" and c["id"].startswith("call_") for c in calls)


def test_llama3_and_mistral_json_calls() -> None:
    _, calls = T.parse(_plan(LLAMA), '<|python_tag|>{"name": "add", "parameters": {"a": 2}}')
    assert json.loads(calls[0]["function"]["arguments"]) == {"a": 2}
    _, calls = T.parse(
        _plan(LLAMA), '{"name": "add", "parameters": {"a": 2}}; {"name": "get_weather", "parameters": {}}'
    )
    assert len(calls) == 2
    _, calls = T.parse(_plan(MISTRAL), '[{"name": "add", "arguments": {"a": 3}}]')
    assert json.loads(calls[0]["function"]["arguments"]) == {"a": 3}


@pytest.mark.parametrize(
    "text",
    [
        "no call at all",
        '<tool_call>{"name": "add", "arguments": {"a": 1</tool_call>',  # broken JSON
        '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>',  # a function it was not given
        '{"name": "add", "arguments": "not json"}',
    ],
)
def test_text_that_is_not_a_well_formed_call_stays_content(text: str) -> None:
    for template in (HERMES, LLAMA):
        content, calls = T.parse(_plan(template), text)
        assert calls == [] and content == text


def test_a_stream_holds_back_what_may_open_a_call() -> None:
    split = T.StreamSplit(_plan(HERMES))
    shown = [
        split.feed(d)
        for d in ["Hello ", "<tool", "_call>", '{"name": "add", "arguments": {"a": 1}}', "</tool_call>"]
    ]
    assert "".join(shown) == "Hello " and shown[1] == ""
    tail, calls = split.end()
    assert tail == "" and calls[0]["function"]["name"] == "add"
    plain = T.StreamSplit(_plan(HERMES))
    assert plain.feed("a <tool") == "a " and plain.feed("s are fine") == "<tools are fine"
    assert plain.end() == ("", [])
    required = T.StreamSplit(_plan(HERMES, "required"))
    assert required.feed("anything") == ""  # the whole reply is a call: held to the end


def test_stream_deltas_have_openais_shape() -> None:
    _, calls = T.parse(_plan(HERMES), '<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>')
    first, args = T.stream_deltas(calls)
    assert first == {
        "index": 0,
        "id": calls[0]["id"],
        "type": "function",
        "function": {"name": "add", "arguments": ""},
    }
    assert args == {"index": 0, "function": {"arguments": calls[0]["function"]["arguments"]}}


def test_the_enforcing_grammar_follows_the_family_and_the_choice() -> None:
    assert T.grammar(_plan(HERMES)) is None and T.grammar(_plan(HERMES, "none")) is None
    named = T.grammar(_plan(HERMES, {"type": "function", "function": {"name": "add"}}))["grammar"]
    assert named.startswith('start: "<tool_call>\\n" %json') and "get_weather" not in named
    many = T.grammar(_plan(HERMES, "required", True))["grammar"]
    assert "call (" in many and "anyOf" in many
    one = T.grammar(_plan(LLAMA, "required", False))["grammar"]
    assert '"parameters"' in one and "call (" not in one


@pytest.mark.parametrize(
    ("tools", "choice", "template", "param"),
    [
        (TOOLS, "required", "{{ messages }}", "tools"),
        (TOOLS, {"type": "function", "function": {"name": "nope"}}, HERMES, "tool_choice"),
        (TOOLS, "sometimes", HERMES, "tool_choice"),
        ([{"type": "code_interpreter"}], "auto", HERMES, "tools[0]"),
        ([{"type": "function", "function": {"name": "has space"}}], "auto", HERMES, "tools[0]"),
        (TOOLS, "required", MISTRAL, "tool_choice"),  # parsed, not enforced, for mistral
        (None, "required", HERMES, "tool_choice"),
    ],
)
def test_bad_tool_requests_are_refused_by_name(
    tools: object, choice: object, template: str, param: str
) -> None:
    with pytest.raises(InvalidInput) as e:
        T.plan(tools, choice, None, template)  # type: ignore[arg-type]
    assert e.value.param == param
