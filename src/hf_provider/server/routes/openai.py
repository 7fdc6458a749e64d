"""OpenAI-compatible routes: /v1/embeddings, /v1/completions, /v1/chat/completions, /v1/models."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from hf_provider.errors import InvalidInput, TaskNotSupported
from hf_provider.provider import Provider
from hf_provider.server.deps import JSONResponse, priority_of, provider_of
from hf_provider.server.schemas import ChatRequest, CompletionRequest, EmbeddingsRequest

router = APIRouter()


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingsRequest, request: Request) -> Response:
    """Served by `server/fastpath.py` in practice; kept for the OpenAPI schema and as the reference path."""
    return JSONResponse(await embeddings_payload(provider_of(request), body, priority_of(request)))


async def embeddings_payload(provider: Provider, body: EmbeddingsRequest, priority: str) -> dict[str, Any]:
    texts = [body.input] if isinstance(body.input, str) else body.input
    params: dict[str, Any] = {}
    if body.dimensions is not None:
        params["dimensions"] = body.dimensions
    vectors, tokens = await provider.arun_usage(body.model, "embeddings", texts, priority=priority, **params)
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
        "model": body.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _gen_task(provider: Provider, model: str) -> str:
    e = provider.manager.get(model)
    tasks = e.model.handlers if e.model else {}
    for t in ("text-generation", "text2text-generation"):
        if t in tasks:
            return t
    raise TaskNotSupported(model, "text-generation", tasks, "completions need a text-generation model")


def _gen_params(
    max_tokens: int | None, temperature: float | None, top_p: float | None, stop: Any, seed: int | None
) -> dict[str, Any]:
    p: dict[str, Any] = {}
    if max_tokens is not None:
        p["max_new_tokens"] = max_tokens
    if temperature is not None:
        p["temperature"] = temperature
        p["do_sample"] = temperature > 0
    if top_p is not None:
        p["top_p"] = top_p
    if stop:
        p["stop"] = stop
    if seed is not None:
        p["seed"] = seed
    return p


def _sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Response:
    provider = provider_of(request)
    task = _gen_task(provider, body.model)
    params = _gen_params(body.max_tokens, body.temperature, body.top_p, body.stop, body.seed)
    cid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:
        if not isinstance(body.prompt, str):
            raise InvalidInput("stream=true takes a single prompt string", param="prompt")
        chunks = provider.astream(body.model, task, body.prompt, priority=priority_of(request), **params)
        first = await _first(chunks)

        async def events() -> AsyncIterator[bytes]:
            base = {"id": cid, "object": "text_completion", "created": created, "model": body.model}
            if body.echo:
                yield _sse(
                    {
                        **base,
                        "choices": [
                            {"index": 0, "text": body.prompt, "finish_reason": None, "logprobs": None}
                        ],
                    }
                )
            async for delta in _chain(first, chunks):
                yield _sse(
                    {
                        **base,
                        "choices": [{"index": 0, "text": delta, "finish_reason": None, "logprobs": None}],
                    }
                )
            yield _sse(
                {**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}]}
            )
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    outs = await provider.arun(body.model, task, prompts, priority=priority_of(request), **params)
    choices, usage = [], {"prompt_tokens": 0, "completion_tokens": 0}
    for i, (prompt, out) in enumerate(zip(prompts, outs, strict=True)):
        text = out.get("generated_text", "")
        choices.append(
            {
                "index": i,
                "text": (prompt + text) if body.echo else text,
                "logprobs": None,
                "finish_reason": out.get("finish_reason", "stop"),
            }
        )
        usage["prompt_tokens"] += out.get("prompt_tokens", 0)
        usage["completion_tokens"] += out.get("completion_tokens", 0)
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return JSONResponse(
        {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": body.model,
            "choices": choices,
            "usage": usage,
        }
    )


def _chat_prompt(provider: Provider, body: ChatRequest) -> str:
    e = provider.manager.get(body.model)
    tok = e.model.tokenizer if e.model else None
    if tok is None or not getattr(tok, "chat_template", None):
        raise InvalidInput(
            f"model {body.model!r} has no chat template; use /v1/completions with a plain prompt",
            param="messages",
        )
    messages = []
    for m in body.messages:
        content = m.content
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if p.get("type") == "text")
        messages.append({"role": m.role, "content": content or ""})
    try:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # template errors (e.g. roles out of order) are the caller's to fix
        raise InvalidInput(
            f"the model's chat template rejected the messages: {exc}", param="messages"
        ) from exc


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request) -> Response:
    provider = provider_of(request)
    task = _gen_task(provider, body.model)
    prompt = _chat_prompt(provider, body)
    params = _gen_params(
        body.max_completion_tokens or body.max_tokens, body.temperature, body.top_p, body.stop, body.seed
    )
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model}
    if body.stream:
        chunks = provider.astream(body.model, task, prompt, priority=priority_of(request), **params)
        first = await _first(chunks)

        async def events() -> AsyncIterator[bytes]:
            yield _sse(
                {
                    **base,
                    "choices": [
                        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                    ],
                }
            )
            async for delta in _chain(first, chunks):
                yield _sse(
                    {**base, "choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": None}]}
                )
            yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
    out = await provider.arun(body.model, task, prompt, priority=priority_of(request), **params)
    pt, ct = out.get("prompt_tokens", 0), out.get("completion_tokens", 0)
    return JSONResponse(
        {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": out.get("generated_text", "")},
                    "finish_reason": out.get("finish_reason", "stop"),
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
        }
    )


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    provider = provider_of(request)
    data = [
        {
            "id": d["name"],
            "object": "model",
            "created": 0,
            "owned_by": "hf-provider",
            "tasks": d["tasks"],
            "state": d["state"],
        }
        for d in provider.manager.describe()
    ]
    return JSONResponse({"object": "list", "data": data})


_END = object()


async def _first(chunks: AsyncIterator[str]) -> Any:
    """Pull the first delta before the response starts, so errors (bad input, unknown model) become a proper
    status code instead of a broken stream."""
    try:
        return await chunks.__anext__()
    except StopAsyncIteration:
        return _END


async def _chain(first: Any, rest: AsyncIterator[str]) -> AsyncIterator[str]:
    if first is _END:
        return
    yield first
    async for d in rest:
        yield d
