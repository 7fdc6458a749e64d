"""Chat messages as the model's chat template takes them."""

from __future__ import annotations

import json
from typing import Any

from hf_provider.errors import InvalidInput, UnsupportedContent
from hf_provider.server.schemas import ChatRequest


def template_messages(body: ChatRequest) -> list[dict[str, Any]]:
    """The conversation as the chat template takes it. Content parts other than text (an image, audio, a file)
    are refused: the models served here are text-only, and dropping a part would answer another question."""
    messages = []
    for i, m in enumerate(body.messages):
        content = m.content
        if isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif kind == "refusal" and m.role == "assistant" and isinstance(part.get("refusal"), str):
                    texts.append(part["refusal"])
                elif kind in ("image_url", "input_audio", "file", "input_image", "audio"):
                    raise UnsupportedContent(
                        f"messages[{i}].content[{j}] is an {kind!r} part; model {body.model!r} is text-only. "
                        "Send text parts only.",
                        param=f"messages[{i}].content[{j}]",
                    )
                else:
                    raise InvalidInput(
                        f"messages[{i}].content[{j}] must be a content part such as "
                        '{"type": "text", "text": "..."}',
                        param=f"messages[{i}].content[{j}]",
                    )
            content = "".join(texts)
        if content is None and m.refusal is not None:
            content = m.refusal
        msg: dict[str, Any] = {"role": m.role, "content": content or ""}
        if m.tool_calls:
            msg["tool_calls"] = [_tool_call(i, j, c) for j, c in enumerate(m.tool_calls)]
        if m.tool_call_id is not None:
            msg["tool_call_id"] = m.tool_call_id
        if m.name is not None:
            msg["name"] = m.name
        messages.append(msg)
    return messages


def _tool_call(i: int, j: int, call: dict[str, Any]) -> dict[str, Any]:
    """An assistant's earlier call as chat templates take it: OpenAI sends `arguments` as a JSON string,
    templates (transformers' convention) render a mapping."""
    fn = call.get("function") if isinstance(call, dict) else None
    args = fn.get("arguments", "{}") if isinstance(fn, dict) else None
    try:
        parsed = json.loads(args) if isinstance(args, str) else args
    except ValueError:
        parsed = None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(parsed, dict):
        raise InvalidInput(
            f"messages[{i}].tool_calls[{j}] must be {{'type': 'function', 'function': {{'name', 'arguments': "
            "a JSON object as a string}}",
            param=f"messages[{i}].tool_calls[{j}]",
        )
    return {"id": call.get("id"), "type": "function", "function": {"name": fn["name"], "arguments": parsed}}
