"""A task that assembles its answer from all its items (rerank, zero-shot) does so once, at settlement; an
assembly that raises fails that request with the real error instead of leaving it unsettled."""

from __future__ import annotations

import pytest

from hf_provider.scheduling.request import Request
from hf_provider.types import Item


class _Ranking:
    task = "rerank"

    def __init__(self) -> None:
        self.calls = 0

    def assemble(self, results: list, params: dict, single: bool) -> dict:
        self.calls += 1
        if params.get("boom"):
            raise ValueError("assembly failed")
        return {"ranked": sorted(results, reverse=True), "single": single}


def _req(handler: object, params: dict, n: int = 3) -> Request:
    items = [Item(data=i, n_tokens=1) for i in range(n)]
    return Request(handler, items, params, key="k", single=False, model="m")


def test_answer_is_assembled_once_from_every_item_in_index_order() -> None:
    h = _Ranking()
    req = _req(h, {})
    assert not req.item_done(2, 0.5, 1.0)
    assert not req.item_done(0, 0.9, 1.0)
    assert h.calls == 0  # not before the last item
    assert req.item_done(1, 0.1, 1.0)
    assert req.result(0) == {"ranked": [0.9, 0.5, 0.1], "single": False}
    assert h.calls == 1 and req.outcome == "ok"
    assert not req.item_done(1, 0.2, 2.0)  # a late duplicate changes nothing
    assert h.calls == 1


def test_an_assembly_that_raises_fails_the_request_with_its_error() -> None:
    req = _req(_Ranking(), {"boom": True}, n=1)
    assert req.item_done(0, 0.3, 1.0)  # this call settled it, but not "ok"
    assert req.outcome == "error" and req.settled
    with pytest.raises(ValueError, match="assembly failed"):
        req.result(0)


def test_cancelled_request_is_never_assembled() -> None:
    h = _Ranking()
    req = _req(h, {}, n=2)
    req.item_done(0, 0.3, 1.0)
    assert req.cancel(1.5)
    assert not req.item_done(1, 0.4, 2.0)
    assert h.calls == 0 and req.outcome == "cancelled"
