"""A private Ray API behind one function: telling Ray's router which models a replica holds (the other private
part we touch, the proxy's answer to a lost replica, is scaling/lost_replica.py).

Ray 2.60 has no public call for it. `@serve.multiplexed` is the only public way, and it keeps its own
count-limited LRU of models, which our byte budget replaces (scaling/replica.py `Advertiser`); it reports
through `ServeControllerClient.record_request_routing_info(RequestRoutingInfo(...))` (ray/serve/multiplex.py),
and so do we. `record_routing_stats` (public) does not serve: the router reads multiplexed model ids from
their own field, not from the stats. Checked against Ray 2.60 (the extra's lowest version);
tests/unit/scaling/test_ray_compat.py fails when a Ray upgrade moves or renames any part of it; a replica on a
Ray outside TESTED logs a warning (check the call against that Ray, then widen TESTED and the `ray`
extra's bound in pyproject.toml).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import ray

log = logging.getLogger(__name__)

TESTED = ((2, 60), (2, 60))  # Ray versions (major, minor) this private call was checked against


def ray_version() -> tuple[int, int]:
    major, minor = ray.__version__.split(".")[:2]
    return int(major), int(minor)


def model_ids_pusher() -> Callable[[list[str]], None]:
    """A function that sets this replica's advertised model ids (call it inside a replica). Raises RuntimeError
    naming the missing part when this Ray lacks the private API, so a replica fails at start, loudly, instead of
    serving without affinity; logs a warning when the Ray version is outside those checked."""
    if not TESTED[0] <= ray_version() <= TESTED[1]:
        log.warning(
            "Ray %s is outside the versions hf-provider's model routing was checked with (%s to %s); "
            "it uses a private Ray API (record_request_routing_info)",
            ray.__version__,
            ".".join(map(str, TESTED[0])),
            ".".join(map(str, TESTED[1])),
        )
    try:
        from ray.serve._private.client import ServeControllerClient
        from ray.serve._private.common import RequestRoutingInfo
        from ray.serve.context import _get_global_client, _get_internal_replica_context
    except ImportError as e:
        raise RuntimeError(f"Ray {ray.__version__} lacks the private API model routing uses: {e}") from e
    context = _get_internal_replica_context()
    if context is None:
        raise RuntimeError("model ids are pushed from inside a Ray Serve replica only")
    if not callable(getattr(ServeControllerClient, "record_request_routing_info", None)):
        raise RuntimeError(
            f"Ray {ray.__version__} has no ServeControllerClient.record_request_routing_info: "
            "hf-provider's model routing needs updating for this Ray"
        )
    replica_id = context.replica_id

    def push(names: list[str]) -> None:
        # the client is looked up on every push, as Ray's own multiplexer does (it may be reconnected)
        _get_global_client().record_request_routing_info(
            RequestRoutingInfo(replica_id=replica_id, multiplexed_model_ids=names)
        )

    return push
