"""POST /v1/rerank (and /v2/rerank) in the Cohere / Jina shape, POST /v1/score in vLLM's.

Both run the provider's `rerank` / `score` tasks (runtime/tasks/rerank.py), so a cross-encoder's pairs of several
requests share batches; an embedding model ranks by cosine when the body says `"method": "cosine"`, and every
answer names its method. The same tasks answer at /v1/tasks/rerank and /v1/tasks/score.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from hf_provider.provider import Answer
from hf_provider.server.deps import (
    JSONResponse,
    deadline_of,
    priority_of,
    provider_of,
    served_headers,
    until_disconnect,
)

router = APIRouter()


class _PairBody(BaseModel):
    # A field we do not implement (Cohere's rank_fields, max_tokens_per_doc...) is refused with a 400 naming it.
    model_config = ConfigDict(extra="forbid")
    model: str
    method: Literal["cross-encoder", "cosine"] | None = Field(
        None, description="default: the model's own (cross-encoder); 'cosine' ranks with an embedding model"
    )
    raw_scores: bool = Field(False, description="a cross-encoder's logits instead of their sigmoid")
    truncate: bool = Field(
        False, description="cut pairs over the model's token limit instead of refusing them"
    )

    def params(self) -> dict[str, Any]:
        return {"method": self.method, "raw_scores": self.raw_scores, "truncate": self.truncate}


class RerankDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


class RerankRequest(_PairBody):
    query: str
    documents: list[str | RerankDocument] = Field(description='strings, or objects {"text": ...}')
    top_n: int | None = Field(None, ge=1, description="the best top_n documents; default: all, ranked")
    return_documents: bool = Field(False, description='each result carries its document {"text": ...}')


class ScoreRequest(_PairBody):
    text_1: str | list[str] = Field(description="one text (scored against every text_2), or a list")
    text_2: str | list[str] = Field(description="texts scored against text_1, index by index for two lists")


async def _run(request: Request, model: str, task: str, inputs: Any, params: dict[str, Any]) -> Answer:
    work = provider_of(request).arun_usage(
        model, task, inputs, params, priority=priority_of(request), deadline=deadline_of(request)
    )
    return await until_disconnect(request.receive, work)


def _headers(answer: Answer) -> dict[str, str]:
    return served_headers(answer.served_by, answer.fallback_reason, answer.revision)


@router.post("/v1/rerank")
@router.post("/v2/rerank")
async def rerank(body: RerankRequest, request: Request) -> Response:
    docs = [d if isinstance(d, str) else d.text for d in body.documents]
    params = {**body.params(), "top_n": body.top_n, "return_documents": body.return_documents}
    answer = await _run(request, body.model, "rerank", {"query": body.query, "documents": docs}, params)
    return JSONResponse(
        {
            "id": f"rerank-{uuid.uuid4().hex}",
            "model": body.model,  # the name asked for, even when a fallback served it
            "method": answer.result["method"],
            "results": answer.result["results"],
            "usage": {"total_tokens": answer.tokens},
        },
        headers=_headers(answer),
    )


@router.post("/v1/score")
async def score(body: ScoreRequest, request: Request) -> Response:
    inputs = {"text_1": body.text_1, "text_2": body.text_2}
    answer = await _run(request, body.model, "score", inputs, body.params())
    return JSONResponse(
        {
            "id": f"score-{uuid.uuid4().hex}",
            "object": "list",
            "created": int(time.time()),
            "model": body.model,
            "method": answer.result["method"],
            "data": [
                {"index": i, "object": "score", "score": s} for i, s in enumerate(answer.result["scores"])
            ],
            "usage": {"prompt_tokens": answer.tokens, "total_tokens": answer.tokens},
        },
        headers=_headers(answer),
    )
