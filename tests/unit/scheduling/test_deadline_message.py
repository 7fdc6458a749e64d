"""A deadline message states the deadline's length (never negative) and the knob the caller can turn."""

from __future__ import annotations

from hf_provider.context import CALL, Call
from hf_provider.scheduling.request import Request
from hf_provider.types import Item


class _Task:
    task = "embeddings"


def _req(submitted: float, deadline: float) -> Request:
    return Request(
        _Task(),
        [Item(data="x", n_tokens=1)],
        {},
        key="k",
        single=True,
        submitted=submitted,
        deadline=deadline,
        model="m",
    )


def test_python_call_is_told_to_pass_a_longer_timeout():
    msg = str(_req(submitted=100.0, deadline=100.5).deadline_error())
    assert "within its deadline of 0.5s" in msg
    assert "timeout=" in msg and "X-Request-Timeout" not in msg


def test_http_call_counts_from_arrival_and_names_the_header():
    # The deadline passed before the request reached its scheduler: the message still states the deadline's
    # length from the HTTP request's arrival, not a negative time since its submission.
    token = CALL.set(Call(arrived=10.0))
    try:
        req = _req(submitted=10.2, deadline=10.1)
    finally:
        CALL.reset(token)
    msg = str(req.deadline_error())
    assert "within its deadline of 0.1s" in msg and "-" not in msg.split("deadline")[1].split(";")[0]
    assert "X-Request-Timeout" in msg and "timeout=" not in msg
