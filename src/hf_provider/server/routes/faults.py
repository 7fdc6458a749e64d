"""TESTING ONLY: GET / POST /v1/admin/faults, the fault injection rules (resilience/faults.py) at run time.

Included by create_app only when the `[faults]` setting is present: a production server has no such route.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from hf_provider.errors import InvalidInput
from hf_provider.server.deps import JSONResponse, provider_of
from hf_provider.settings import FaultRule

router = APIRouter()


class FaultRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[FaultRule] = Field(default_factory=list)


def _view(request: Request) -> dict:
    faults = provider_of(request).faults
    assert faults is not None  # the router is only included when fault injection is configured
    return {"rules": [r.model_dump() for r in faults.rules()], "injected": faults.injected}


@router.get("/v1/admin/faults")
async def get_faults(request: Request) -> Response:
    return JSONResponse(_view(request))


@router.post("/v1/admin/faults")
async def set_faults(body: FaultRules, request: Request) -> Response:
    """Replace the rules (an empty list stops injecting)."""
    faults = provider_of(request).faults
    assert faults is not None
    try:
        faults.set(body.rules)
    except ValueError as e:
        raise InvalidInput(str(e), param="rules") from None
    return JSONResponse(_view(request))
