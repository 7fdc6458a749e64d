"""A request in flight on a lost replica: Ray's proxy answers 503 + Retry-After with our error body once
scaling/lost_replica.py wrapped its mapping (the real proxy module and its real response path, no cluster).
These also fail, by name, when a Ray upgrade moves or changes the private parts it wraps."""

from __future__ import annotations

import inspect
import json
import sys

import pytest

pytest.importorskip("ray.serve")

from ray.exceptions import ActorDiedError, ActorUnavailableError
from ray.serve._private import proxy
from ray.serve._private.http_util import send_http_response_on_exception

from hf_provider.scaling import lost_replica


@pytest.fixture
def wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    # restored after the test: the wrapper is installed on the real module
    monkeypatch.setattr(proxy, "get_http_response_status", proxy.get_http_response_status)
    assert lost_replica.install_in_proxy() is True


def _answer(status: object) -> tuple[int, dict[str, str], dict]:
    start, body = send_http_response_on_exception(status, response_started=False)
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, json.loads(body["body"])


def test_the_wrapped_parts_are_where_we_use_them() -> None:
    params = list(inspect.signature(proxy.get_http_response_status).parameters)
    assert params == ["exc", "request_timeout_s", "request_id"]


@pytest.mark.parametrize(
    "exc", [ActorDiedError(), ActorUnavailableError("unreachable", None)], ids=["died", "unavailable"]
)
def test_a_lost_replica_is_503_with_retry_after_and_our_body(wrapped: None, exc: BaseException) -> None:
    status, headers, body = _answer(proxy.get_http_response_status(exc, None, "req-1"))
    assert status == 503
    assert headers["retry-after"] == str(lost_replica.RETRY_AFTER_S)
    assert headers["content-type"] == "application/json"
    assert body["error"]["code"] == "replica_lost" and "req-1" in body["error"]["message"]


def test_other_failures_keep_rays_answer(wrapped: None) -> None:
    status = proxy.get_http_response_status(ValueError("boom"), None, "req-2")
    assert int(status.code) == 500  # Ray's own: no response from the proxy, its server sends a bare 500
    assert send_http_response_on_exception(status, response_started=False) == []
    assert int(proxy.get_http_response_status(TimeoutError(), 5.0, "req-3").code) == 408


def test_installed_once_and_not_outside_a_proxy(wrapped: None, monkeypatch: pytest.MonkeyPatch) -> None:
    first = proxy.get_http_response_status
    assert lost_replica.install_in_proxy() is True
    assert proxy.get_http_response_status is first  # not wrapped twice
    monkeypatch.delitem(sys.modules, "ray.serve._private.proxy")
    assert lost_replica.install_in_proxy() is False


def test_a_response_already_started_cannot_be_answered_again(wrapped: None) -> None:
    status = proxy.get_http_response_status(ActorDiedError(), None, "req-4")
    assert send_http_response_on_exception(status, response_started=True) == []
