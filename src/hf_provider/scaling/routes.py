"""What a replica's app adds to the usual one: GET /v1/admin/replicas (every replica's models and memory),
the same list in GET /v1/admin/models, and an `x-hfp-replica` header naming the replica that answered."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.responses import Response

from hf_provider.server.deps import JSONResponse

log = logging.getLogger(__name__)

Replicas = Callable[[], Awaitable[list[dict[str, Any]]]]


def install(app: FastAPI, replicas: Replicas, replica_id: str) -> None:
    router = APIRouter(prefix="/v1/admin")

    @router.get("/replicas")
    async def all_replicas() -> Response:
        return JSONResponse({"replica": replica_id, "replicas": await replicas()})

    app.include_router(router)

    async def models_extra() -> dict[str, Any]:
        # read by GET /v1/admin/models: which replica answered, and the view of all of them
        return {"replica": replica_id, "replicas": await replicas()}

    app.state.models_extra = models_extra


class ReplicaHeader:
    """Pure ASGI: names the replica in `x-hfp-replica` on every response, and calls `on_request` first (the
    replica advertises the model the request was routed for)."""

    def __init__(self, app: Any, replica_id: str, on_request: Callable[[], None]) -> None:
        self.app = app
        self.header = (b"x-hfp-replica", replica_id.encode())
        self.on_request = on_request

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self.on_request()
        except Exception:  # advertising is an optimisation: the request goes on without it
            log.warning("advertising the routed model failed", exc_info=True)

        async def send_named(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_named)
