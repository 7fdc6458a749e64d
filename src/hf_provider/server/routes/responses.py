"""POST /v1/responses: OpenAI's Responses API for text in and text out, streamed or not.

Served through the same chat path as /v1/chat/completions (the model's chat template, the same parameters and
grammar for `text.format`). Responses are not stored: `store: true`, `previous_response_id` and `conversation`
are refused by name (server/openai_fields.py RESPONSES), so a client sends its conversation as `input`. Tools
are served by chat completions.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Literal

import orjson
from fastapi import APIRouter, Request
from pydantic import Field
from starlette.responses import Response, StreamingResponse

from hf_provider.context import CLIENT_NAMES
from hf_provider.errors import DeadlineExceeded, InvalidInput, ProviderError, UnsupportedContent
from hf_provider.server import openai_fields as F
from hf_provider.server.deps import JSONResponse, provider_of, served_headers
from hf_provider.server.routes.openai import _generation, _open, _run
from hf_provider.server.schemas import _OpenAIBody

router = APIRouter()
_NAMES = {"inputs": "input", "max_new_tokens": "max_output_tokens", "grammar": "text.format"}


class ResponsesRequest(_OpenAIBody):
    FIELDS: ClassVar[Any] = F.RESPONSES
    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stream: bool | None = False
    text: dict[str, Any] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    user: str | None = None
    safety_identifier: str | None = None


def _messages(body: ResponsesRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if body.instructions:
        messages.append({"role": "system", "content": body.instructions})
    if isinstance(body.input, str):
        return [*messages, {"role": "user", "content": body.input}]
    for i, item in enumerate(body.input):
        kind = item.get("type", "message")
        role = item.get("role")
        if kind != "message" or role not in ("user", "system", "developer", "assistant"):
            raise InvalidInput(
                f"input[{i}] is a {kind!r} item; this route takes message items (role and text content); "
                "function calls are served by /v1/chat/completions",
                param=f"input[{i}]",
            )
        content = item.get("content")
        if isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                ptype = part.get("type") if isinstance(part, dict) else None
                if ptype in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif ptype in ("input_image", "input_file", "input_audio"):
                    raise UnsupportedContent(
                        f"input[{i}].content[{j}] is an {ptype!r} part; model {body.model!r} is text-only",
                        param=f"input[{i}].content[{j}]",
                    )
                else:
                    raise InvalidInput(
                        f"input[{i}].content[{j}] must be an input_text part",
                        param=f"input[{i}].content[{j}]",
                    )
            content = "".join(texts)
        if not isinstance(content, str):
            raise InvalidInput(
                f"input[{i}].content must be text or a list of text parts", param=f"input[{i}]"
            )
        messages.append({"role": role, "content": content})
    return messages


def _params(body: ResponsesRequest) -> dict[str, Any]:
    p: dict[str, Any] = {}
    if body.max_output_tokens is not None:
        p["max_new_tokens"] = body.max_output_tokens
    if body.temperature is not None:
        p["temperature"] = body.temperature
        p["do_sample"] = body.temperature > 0
    if body.top_p is not None:
        p["top_p"] = body.top_p
    if body.truncation == "auto":
        p["truncate"] = True
    fmt = (body.text or {}).get("format") or {"type": "text"}
    if fmt.get("type") == "json_object":
        p["grammar"] = {"type": "json_object"}
    elif fmt.get("type") == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise InvalidInput(
                "text.format.schema must be a JSON schema (an object)", param="text.format.schema"
            )
        p["grammar"] = {"type": "json_schema", "schema": fmt["schema"]}
    elif fmt.get("type") != "text":
        raise InvalidInput(
            "text.format.type must be text, json_object or json_schema", param="text.format.type"
        )
    return p


class _Reply:
    """The response object and its output message, as OpenAI writes them."""

    def __init__(self, body: ResponsesRequest) -> None:
        self.body = body
        self.id, self.msg_id = f"resp_{uuid.uuid4().hex}", f"msg_{uuid.uuid4().hex}"
        self.created = int(time.time())

    def part(self, text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def item(self, text: str | None, status: str) -> dict[str, Any]:
        content = [] if text is None else [self.part(text)]
        return {
            "type": "message",
            "id": self.msg_id,
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def response(
        self, status: str, text: str | None = None, result: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        b = self.body
        incomplete = None
        if result is not None and result.get("finish_reason") == "length":
            status, incomplete = "incomplete", {"reason": "max_output_tokens"}
        out: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "model": b.model,
            "output": []
            if text is None
            else [self.item(text, "completed" if status != "incomplete" else status)],
            "error": None,
            "incomplete_details": incomplete,
            "instructions": b.instructions,
            "max_output_tokens": b.max_output_tokens,
            "metadata": {},
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "store": False,
            "temperature": b.temperature,
            "top_p": b.top_p,
            "text": b.text or {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "truncation": b.truncation or "disabled",
            "user": b.user,
            "usage": None,
        }
        if result is not None:
            pt, ct = int(result.get("prompt_tokens", 0)), int(result.get("completion_tokens", 0))
            out["usage"] = {
                "input_tokens": pt,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": ct,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": pt + ct,
            }
        return out


@router.post("/v1/responses")
async def responses(body: ResponsesRequest, request: Request) -> Response:
    CLIENT_NAMES.set(_NAMES)
    provider = provider_of(request)
    gen = await _generation(provider, body.model, _messages(body))
    assert gen.prompt is not None
    params = _params(body)
    reply = _Reply(body)
    if not body.stream:
        answer = await _run(provider, request, body.model, gen.task, gen.prompt, params)
        result = answer.result
        return JSONResponse(
            reply.response("completed", result.get("generated_text", ""), result),
            headers=served_headers(answer.served_by, answer.fallback_reason, answer.revision),
        )
    stream = await _open(provider, request, body.model, gen.task, gen.prompt, params)
    return StreamingResponse(_events(reply, stream), media_type="text/event-stream")


async def _events(reply: _Reply, stream: Any) -> AsyncIterator[bytes]:
    """OpenAI's event sequence: created, in_progress, the item and its part added, text deltas, the text, part
    and item done, completed (or incomplete); an error after the start is an `error` event."""
    seq = 0

    def event(kind: str, **data: Any) -> bytes:
        nonlocal seq
        seq += 1
        payload = {"type": kind, "sequence_number": seq, **data}
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    where = {"item_id": reply.msg_id, "output_index": 0, "content_index": 0}
    yield event("response.created", response=reply.response("in_progress"))
    yield event("response.in_progress", response=reply.response("in_progress"))
    yield event("response.output_item.added", output_index=0, item=reply.item(None, "in_progress"))
    yield event("response.content_part.added", part=reply.part(""), **where)
    text = ""
    try:
        async for delta in stream:
            text += delta
            yield event("response.output_text.delta", delta=delta, logprobs=[], **where)
        result = stream.result or {}
        final = reply.response("completed", text, result)
        status = final["status"]
        yield event("response.output_text.done", text=text, logprobs=[], **where)
        yield event("response.content_part.done", part=reply.part(text), **where)
        yield event("response.output_item.done", output_index=0, item=final["output"][0])
        yield event("response.incomplete" if status == "incomplete" else "response.completed", response=final)
    except DeadlineExceeded as e:
        yield event("error", code="timeout", message=e.message, param=None)
    except ProviderError as e:
        yield event("error", code=e.code, message=e.message, param=e.param)
    finally:
        stream.close()
