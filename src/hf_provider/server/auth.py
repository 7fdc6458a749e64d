"""Optional bearer-token check (HFP_SERVER__API_KEY).

Open without a key: the health probes (for orchestrators) and the dashboard page with its static assets, which
hold no data: the page asks for the key and sends it with every data request. /metrics and /v1/* need it.
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson

from hf_provider.errors import Unauthorized
from hf_provider.server.errors import error_body, refuse

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/dashboard"})
# Plain file names straight inside this folder only (no further "/"), as the asset route serves them.
OPEN_ASSET_PREFIX = "/dashboard/static/"


def is_open(path: str) -> bool:
    if path in OPEN_PATHS:
        return True
    if path.startswith(OPEN_ASSET_PREFIX):
        name = path.removeprefix(OPEN_ASSET_PREFIX)
        return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")
    return False


class BearerAuth:
    def __init__(self, app: Any, api_key: str, provider: Any = None) -> None:
        self.app = app
        self._expected = f"Bearer {api_key}".encode()
        self.provider = provider  # records a refused inference request (server/errors.py refuse)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        got = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(got, self._expected):
            await self.app(scope, receive, send)
            return
        error = Unauthorized("Missing or wrong API key: send 'Authorization: Bearer <key>'.")
        refuse(self.provider, scope.get("state", {}), scope["path"], error)
        body = orjson.dumps(error_body(error.message, "invalid_request_error", error.code))
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
            }
        )
        await send({"type": "http.response.body", "body": body})
