"""A request in flight on a replica that is lost (its node or its process died) ends in 503 with Retry-After,
our error body and code `replica_lost`, instead of Ray's bare 500 "Internal Server Error".

Why here: Ray's HTTP proxy is Ray's process and answers such a request itself (the replica never will);
it maps the actor's death (ActorDiedError, or ActorUnavailableError while Ray still probes it) to 500, which
tells a client nothing it can act on, though the request is safe to send again (Ray has already stopped
routing to that replica, and new requests go to the replicas left). Ray 2.60 has no public hook for the
proxy's error statuses (HTTPOptions.middlewares was removed), so the proxy's own mapping function is wrapped:
`install_in_proxy` runs where our request router (scaling/router.py) is built, which is inside Ray's proxies
(and in handles elsewhere, where it does nothing). A private API, like scaling/ray_compat.py's: checked against
the Ray versions in ray_compat.TESTED; tests/unit/scaling/test_lost_replica.py fails when a Ray upgrade moves
or changes it. A request whose response had started (a stream) cannot be answered again and ends cut off.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1  # Ray routes new requests elsewhere at once; a second covers its next look at the replicas
_PROXY = "ray.serve._private.proxy"
_MARK = "_hfp_lost_replica"


def is_lost_replica(exc: BaseException) -> bool:
    """The replica serving the request died, or cannot be reached (as opposed to an error of the request)."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError

    if isinstance(exc, RayTaskError):
        exc = getattr(exc, "cause", None) or exc
    return isinstance(exc, ActorDiedError | ActorUnavailableError)


def lost_replica_status(request_id: str) -> Any:
    """Ray's ResponseStatus for it: 503, Retry-After, and a body in our error table's format."""
    from ray.serve._private.http_util import retry_after_headers
    from ray.serve._private.proxy_request_response import ResponseStatus

    body = {
        "error": {
            "message": "the replica serving this request was lost (its node or process stopped) before it "
            f"answered; the request may be sent again, to the replicas left (request {request_id})",
            "type": "service_unavailable",
            "param": None,
            "code": "replica_lost",
        }
    }
    return ResponseStatus(code=503, is_error=True, message=body, headers=retry_after_headers(RETRY_AFTER_S))


def install_in_proxy() -> bool:
    """Wrap this process's Ray proxy's error mapping, once; False where no proxy runs in this process."""
    proxy = sys.modules.get(_PROXY)
    if proxy is None:
        return False
    original = getattr(proxy, "get_http_response_status", None)
    if original is None:
        log.warning(
            "Ray %s's proxy has no get_http_response_status: a lost replica's requests get 500", _ray()
        )
        return False
    if getattr(original, _MARK, False):
        return True

    def status(exc: BaseException, request_timeout_s: float | None, request_id: str) -> Any:
        if is_lost_replica(exc):
            return lost_replica_status(request_id)
        return original(exc, request_timeout_s, request_id)

    setattr(status, _MARK, True)
    proxy.get_http_response_status = status
    return True


def _ray() -> str:
    import ray

    return ray.__version__
