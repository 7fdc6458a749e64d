"""OpenAI-compatible routes: /v1/embeddings, /v1/completions, /v1/chat/completions, /v1/models."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from hf_provider.context import CLIENT_NAMES
from hf_provider.errors import (
    InvalidInput,
    ModelNotFound,
)
from hf_provider.provider import Answer, Provider, TextStream
from hf_provider.provider.admin import Generation
from hf_provider.server import openai_choices as choices_
from hf_provider.server import openai_tools
from hf_provider.server.deps import (
    JSONResponse,
    deadline_of,
    priority_of,
    provider_of,
    served_headers,
    until_disconnect,
)
from hf_provider.server.openai_messages import template_messages
from hf_provider.server.openai_stream import check_stream_options, guarded, sse, usage_chunk
from hf_provider.server.schemas import ChatRequest, CompletionRequest, EmbeddingsRequest, GenerationBody

router = APIRouter()
log = logging.getLogger(__name__)


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingsRequest, request: Request) -> Response:
    """Served by `server/fastpath.py` in practice; kept for the OpenAPI schema and as the reference path."""
    payload = embeddings_payload(provider_of(request), body, priority_of(request), deadline_of(request))
    content, headers = await until_disconnect(request.receive, payload)
    return JSONResponse(content, headers=headers)


async def embeddings_payload(
    provider: Provider, body: EmbeddingsRequest, priority: str | None, deadline: float
) -> tuple[dict[str, Any], dict[str, str]]:
    """The response body and its headers (which model served it, see `served_headers`)."""
    CLIENT_NAMES.set(_EMBEDDING_NAMES)
    texts = _as_list(body.input)
    params: dict[str, Any] = {}
    if body.dimensions is not None:
        params["dimensions"] = body.dimensions
    if body.modality is not None:
        params["modality"] = body.modality
    if body.truncate is not None:
        params["truncate"] = body.truncate
    answer = await provider.arun_usage(
        body.model, "embeddings", texts, params, priority=priority, deadline=deadline
    )
    vectors, tokens = answer.result, answer.tokens
    if body.encoding_format == "base64":
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode(),
            }
            for i, v in enumerate(vectors)
        ]
    else:
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return {
        "object": "list",
        "data": data,
        "model": body.model,  # the name asked for, even when a fallback served it (see the README)
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }, served_headers(answer.served_by, answer.fallback_reason, answer.revision)


async def _generation(
    provider: Provider,
    model: str,
    messages: list[dict[str, Any]] | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> Generation:
    """The task (and chat prompt) of the model that will serve: `model`, or the fallback that serves when its load
    failed. A load runs off the event loop."""
    if provider.admin.is_ready(model):
        return provider.admin.generation(model, messages, tools)
    return await asyncio.to_thread(provider.admin.generation, model, messages, tools)


#: The handlers' parameter names as each route's clients write them (context.CLIENT_NAMES): errors say `input`
#: and `max_tokens`, never `inputs` and `max_new_tokens`.
_EMBEDDING_NAMES = {"inputs": "input"}


def _client_names(body: GenerationBody) -> dict[str, str]:
    if isinstance(body, ChatRequest):
        max_name = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
        return {"inputs": "messages", "max_new_tokens": max_name, "grammar": "response_format"}
    return {"inputs": "prompt", "max_new_tokens": "max_tokens", "grammar": "response_format"}


def _as_list(value: Any) -> list[Any]:
    """One input (a string or a list of token ids) as a list of one; a list of inputs as it is."""
    if isinstance(value, str) or (value and isinstance(value[0], int)):
        return [value]
    return list(value)


def _gen_params(body: GenerationBody, max_tokens: int | None) -> dict[str, Any]:
    p: dict[str, Any] = {}
    if max_tokens is not None:
        p["max_new_tokens"] = max_tokens
    if body.temperature is not None:
        p["temperature"] = body.temperature
        p["do_sample"] = body.temperature > 0
    if body.top_p is not None:
        p["top_p"] = body.top_p
    if body.stop:
        p["stop"] = body.stop
    if body.seed is not None:
        p["seed"] = body.seed
    if body.truncate is not None:
        p["truncate"] = body.truncate
    if body.presence_penalty:
        p["presence_penalty"] = body.presence_penalty
    if body.frequency_penalty:
        p["frequency_penalty"] = body.frequency_penalty
    if body.logit_bias:
        p["logit_bias"] = body.logit_bias
    grammar = _grammar(body.response_format)
    if grammar is not None:
        p["grammar"] = grammar
    return p


def _grammar(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    """OpenAI's response_format as the text-generation parameter `grammar` (runtime/constrained.py)."""
    if fmt is None or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name", ""), str):
            raise InvalidInput(
                "response_format.json_schema must be an object with a name and a schema",
                param="response_format.json_schema",
            )
        schema = spec.get("schema")
        if schema is not None and not isinstance(schema, dict):
            raise InvalidInput(
                "response_format.json_schema.schema must be a JSON schema (an object)",
                param="response_format.json_schema.schema",
            )
        return {"type": "json_schema", "schema": schema} if schema is not None else {"type": "json_object"}
    raise InvalidInput(
        "response_format.type must be one of text, json_object, json_schema", param="response_format.type"
    )


def _check_choices(body: GenerationBody, rows: int, logprobs: bool) -> None:
    """What a stream cannot carry: its chunks hold one choice's text."""
    if not body.stream:
        return
    if rows > 1:
        name = "best_of" if isinstance(body, CompletionRequest) and (body.best_of or 1) > 1 else "n"
        raise InvalidInput(f"stream=true streams one choice: send {name}=1, or stream=false", param=name)
    if logprobs:
        raise InvalidInput("logprobs are not streamed: send stream=false for them", param="logprobs")


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Response:
    check_stream_options(body)
    provider = provider_of(request)
    CLIENT_NAMES.set(_client_names(body))
    task = (await _generation(provider, body.model)).task
    params = _gen_params(body, body.max_tokens)
    prompts = _as_list(body.prompt)
    if body.echo and not all(isinstance(p, str) for p in prompts):
        raise InvalidInput("echo=true takes prompts as text, not token ids", param="echo")
    n = body.n or 1
    if body.best_of is not None and body.best_of < n:
        raise InvalidInput(f"best_of ({body.best_of}) must be at least n ({n})", param="best_of")
    rows = choices_.rows_per_prompt(n, body.best_of)
    _check_choices(body, rows, body.logprobs is not None)
    if body.echo and body.logprobs is not None:
        if task != "text-generation":
            raise InvalidInput(
                "logprobs of echoed prompt tokens are computed for decoder-only models", param="echo"
            )
        params["prompt_logprobs"] = True  # the echoed prompt's tokens get theirs (evaluation harnesses)
    if body.logprobs is not None:
        params["logprobs"] = body.logprobs
    elif rows > n:
        params["logprobs"] = 0  # best_of ranks rows by their logprob per token
    cid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:
        if len(prompts) != 1:
            raise InvalidInput("stream=true takes a single prompt", param="prompt")
        stream = await _open(provider, request, body.model, task, prompts[0], params)
        base = {"id": cid, "object": "text_completion", "created": created, "model": body.model}

        def chunk(text: str, finish: str | None) -> bytes:
            return sse(
                {**base, "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}
            )

        async def events() -> AsyncIterator[bytes]:
            if body.echo:
                yield chunk(prompts[0], None)
            async for piece in guarded(stream, chunk, usage_chunk(body, base)):
                yield piece

        return StreamingResponse(events(), media_type="text/event-stream", headers=_stream_headers(stream))
    inputs = [p for p in prompts for _ in range(rows)]
    answer = await _run(provider, request, body.model, task, inputs, params)
    outs = answer.result
    choices = []
    for i, group in enumerate(choices_.pick(outs, len(prompts), rows, n)):
        for j, out in enumerate(group):
            text = out.get("generated_text", "")
            echo = prompts[i] if body.echo else ""
            choices.append(
                {
                    "index": i * n + j,
                    "text": echo + text,
                    "logprobs": (choices_.completion_logprobs(out) if body.logprobs is not None else None),
                    "finish_reason": out.get("finish_reason", "stop"),
                }
            )
    return JSONResponse(
        {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": body.model,
            "choices": choices,
            "usage": choices_.usage(outs, rows),
        },
        headers=served_headers(answer.served_by, answer.fallback_reason, answer.revision),
    )


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request) -> Response:
    check_stream_options(body)
    CLIENT_NAMES.set(_client_names(body))
    provider = provider_of(request)
    # the task and template of the model that serves: the fallback's when the model's load failed
    gen = await _generation(provider, body.model, template_messages(body), body.tools or None)
    task, prompt = gen.task, gen.prompt
    assert prompt is not None  # given messages, a Generation carries its prompt
    tools = openai_tools.plan(body.tools, body.tool_choice, body.parallel_tool_calls, gen.template)
    params = _gen_params(body, body.max_completion_tokens or body.max_tokens)
    forced = openai_tools.grammar(tools) if tools is not None else None
    if forced is not None:
        if "grammar" in params:
            raise InvalidInput(
                "response_format cannot be combined with a required or named tool_choice",
                param="response_format",
            )
        params["grammar"] = forced
    n = body.n or 1
    if body.top_logprobs and not body.logprobs:
        raise InvalidInput("top_logprobs needs logprobs=true", param="top_logprobs")
    _check_choices(body, n, bool(body.logprobs))
    if body.logprobs:
        params["logprobs"] = body.top_logprobs or 0
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model}
    if body.stream:
        stream = await _open(provider, request, body.model, task, prompt, params)

        def plain(text: str, finish: str | None) -> bytes:
            delta = {"content": text} if finish is None else {}
            return sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        chunk = plain
        if tools is not None and tools.parses:
            split = openai_tools.StreamSplit(tools)

            def chunk(text: str, finish: str | None) -> bytes:
                if finish is None:
                    shown = split.feed(text)
                    return plain(shown, None) if shown else b""
                tail, calls = split.end()
                out = plain(tail, None) if tail else b""
                if calls:
                    delta = {"tool_calls": openai_tools.stream_deltas(calls)}
                    out += sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                    finish = "tool_calls"
                return out + plain("", finish)

        async def events() -> AsyncIterator[bytes]:
            yield sse(
                {
                    **base,
                    "choices": [
                        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                    ],
                }
            )
            async for piece in guarded(stream, chunk, usage_chunk(body, base)):
                yield piece

        return StreamingResponse(events(), media_type="text/event-stream", headers=_stream_headers(stream))
    answer = await _run(provider, request, body.model, task, [prompt] * n, params)
    outs = answer.result
    return JSONResponse(
        {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "choices": [_chat_choice(j, out, tools) for j, out in enumerate(outs)],
            "usage": choices_.usage(outs, n),
        },
        headers=served_headers(answer.served_by, answer.fallback_reason, answer.revision),
    )


def _chat_choice(index: int, out: dict[str, Any], tools: openai_tools.ToolPlan | None) -> dict[str, Any]:
    text, finish = out.get("generated_text", ""), out.get("finish_reason", "stop")
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tools is not None and tools.parses:
        content, calls = openai_tools.parse(tools, text)
        if calls:
            message = {"role": "assistant", "content": content, "tool_calls": calls}
            finish = "tool_calls" if finish == "stop" else finish
    return {
        "index": index,
        "message": message,
        "finish_reason": finish,
        "logprobs": choices_.chat_logprobs(out),
    }


def _model_object(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": d["name"],
        "object": "model",
        "created": 0,
        "owned_by": "hf-provider",
        "tasks": d["tasks"],
        "state": d["state"],
        **({"error": d["error"]} if d["state"] == "failed" else {}),  # why it is not serving
    }


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    provider = provider_of(request)
    return JSONResponse({"object": "list", "data": [_model_object(d) for d in provider.admin.describe()]})


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> Response:
    """OpenAI's `client.models.retrieve`: one configured model, or 404 `model_not_found`."""
    described = provider_of(request).admin.describe()
    for d in described:
        if d["name"] == model_id:
            return JSONResponse(_model_object(d))
    raise ModelNotFound(model_id, [d["name"] for d in described])


def _stream_headers(stream: TextStream) -> dict[str, str]:
    return served_headers(stream.request.served_by, stream.request.fallback_reason, stream.request.revision)


async def _run(
    provider: Provider, request: Request, model: str, task: str, inputs: Any, params: dict[str, Any]
) -> Answer:
    work = provider.arun_usage(
        model, task, inputs, params, priority=priority_of(request), deadline=deadline_of(request)
    )
    try:
        return await until_disconnect(request.receive, work)
    except (
        InvalidInput
    ) as e:  # raised past parsing (a continuous-batching slot too short): the client's names
        raise e.renamed(CLIENT_NAMES.get()) from None


async def _open(
    provider: Provider, request: Request, model: str, task: str, prompt: Any, params: dict[str, Any]
) -> TextStream:
    """Queue a streamed generation and wait for its first delta before the response starts, so an error or a
    deadline met before anything was generated still gets its status code (504 for the deadline)."""
    stream = await provider.open_stream(
        model, task, prompt, params, priority=priority_of(request), deadline=deadline_of(request)
    )
    try:
        await until_disconnect(request.receive, stream.first())
    except BaseException:
        stream.close()
        raise
    if stream.request.settled and stream.request.outcome != "ok":
        stream.close()
        stream.request.future.result()  # raises the request's error (DeadlineExceeded -> 504)
    return stream
