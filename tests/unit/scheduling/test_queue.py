"""BatchQueue: batch formation order, bounds and priorities (pure data structure, no threads)."""

from __future__ import annotations

from hf_provider.scheduling.queue import BatchQueue
from hf_provider.scheduling.request import Request
from hf_provider.types import Item


class _Task:
    task = "embeddings"


def _req(lengths: list[int], key: str = "k", priority: int = 0) -> Request:
    return Request(
        _Task(),
        [Item(data=i, n_tokens=n) for i, n in enumerate(lengths)],
        {},
        key=key,
        single=False,
        priority=priority,
    )


def test_batch_bounded_by_count_and_tokens():
    q = BatchQueue(max_batch_size=4, max_batch_tokens=40)
    q.push(_req([10] * 10), now=0.0)
    assert len(q.take(0.0)) == 4  # 4 x 10 = 40 tokens fits
    q2 = BatchQueue(max_batch_size=8, max_batch_tokens=40)
    q2.push(_req([20] * 5), now=0.0)
    assert len(q2.take(0.0)) == 2  # 2 x 20 = 40


def test_oversized_single_item_still_leaves():
    q = BatchQueue(max_batch_size=4, max_batch_tokens=10)
    q.push(_req([50]), now=0.0)
    assert len(q.take(0.0)) == 1


def test_similar_lengths_grouped_and_oldest_always_included():
    q = BatchQueue(max_batch_size=2, max_batch_tokens=10_000)
    first = _req([5])
    q.push(first, now=0.0)
    q.push(_req([100, 6, 90]), now=1.0)
    batch = q.take(2.0)
    assert any(s.request is first for s in batch)
    assert sorted(s.item.n_tokens for s in batch) == [5, 6]


def test_incompatible_keys_never_mix():
    q = BatchQueue(max_batch_size=8, max_batch_tokens=10_000)
    q.push(_req([5, 5], key="a"), now=0.0)
    q.push(_req([5, 5], key="b"), now=0.1)
    assert {s.request.key for s in q.take(1.0)} == {"a"}
    assert {s.request.key for s in q.take(1.0)} == {"b"}
    assert len(q) == 0


def test_interactive_before_batch_but_batch_ages_in():
    q = BatchQueue(max_batch_size=1, max_batch_tokens=10_000, aging_s=2.0)
    bulk = _req([5], key="bulk", priority=1)
    q.push(bulk, now=0.0)
    inter = _req([5], key="inter", priority=0)
    q.push(inter, now=0.5)
    assert q.take(1.0)[0].request is inter  # interactive first while bulk is young
    q.push(_req([5], key="inter2", priority=0), now=2.5)
    assert q.take(3.0)[0].request is bulk  # bulk waited past aging_s and is older


def test_removed_requests_leave_the_queue_and_keep_counts_exact():
    q = BatchQueue(max_batch_size=1, max_batch_tokens=10_000)
    r, other, bulk = _req([5, 5]), _req([5]), _req([5], priority=1)
    for x in (r, other, bulk):
        q.push(x, now=0.0)
    assert q.take(0.0)[0].request is r  # one of r's two items is in a batch, one still queued
    assert q.remove(r) == 1 and q.remove(r) == 0  # a second removal finds nothing
    assert len(q) == 2 and q.class_len(0) == 1 and q.class_len(1) == 1
    assert q.requests() == [other, bulk]
    assert q.take(0.0)[0].request is other
