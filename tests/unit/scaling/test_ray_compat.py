"""The private Ray API behind model routing (scaling/ray_compat.py): these fail, by name, when a Ray upgrade
moves or changes any part of it, instead of replicas silently losing model affinity in production."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

pytest.importorskip("ray.serve")

from hf_provider.scaling import ray_compat


def test_the_private_routing_call_is_where_we_use_it() -> None:
    from ray.serve._private.client import ServeControllerClient
    from ray.serve._private.common import RequestRoutingInfo
    from ray.serve.context import _get_global_client, _get_internal_replica_context

    params = inspect.signature(ServeControllerClient.record_request_routing_info).parameters
    assert list(params) == ["self", "info"]
    fields = {f.name for f in dataclasses.fields(RequestRoutingInfo)}
    assert {"replica_id", "multiplexed_model_ids"} <= fields
    info = RequestRoutingInfo(replica_id="r", multiplexed_model_ids=["a"])  # keywords as we pass them
    assert info.multiplexed_model_ids == ["a"] and info.routing_stats is None  # None: stats left alone
    assert callable(_get_global_client) and callable(_get_internal_replica_context)


def test_pusher_refuses_outside_a_replica() -> None:
    with pytest.raises(RuntimeError, match="inside a Ray Serve replica"):
        ray_compat.model_ids_pusher()


def test_a_ray_outside_the_checked_versions_is_named_in_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert ray_compat.TESTED[0] <= ray_compat.ray_version()  # pyproject's ray extra asks for at least this
    monkeypatch.setattr(
        ray_compat, "ray_version", lambda: (ray_compat.TESTED[1][0], ray_compat.TESTED[1][1] + 1)
    )
    with caplog.at_level("WARNING", logger=ray_compat.__name__), pytest.raises(RuntimeError):
        ray_compat.model_ids_pusher()
    assert "outside the versions" in caplog.text and "record_request_routing_info" in caplog.text


def test_the_ray_extra_allows_exactly_the_checked_minors() -> None:
    # A private API may move in any Ray minor: pip must not install one that TESTED does not name.
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
    (ray,) = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["optional-dependencies"]["ray"]
    (lo_major, lo_minor), (hi_major, hi_minor) = ray_compat.TESTED
    assert ray == f"ray[serve]>={lo_major}.{lo_minor},<{hi_major}.{hi_minor + 1}"
