"""Weighted fair share between the tasks of one model (scheduling/share.py, queue.py) and the pause decisions of
continuous batching (scheduling/preempt.py): pure, with explicit times."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from hf_provider.scheduling.preempt import RowView, decide
from hf_provider.scheduling.queue import BatchQueue
from hf_provider.scheduling.request import Request
from hf_provider.scheduling.share import FairShare
from hf_provider.types import Item


class _Handler:
    generative = True

    def __init__(self, task: str) -> None:
        self.task = task


def _req(task: str, n: int = 1, priority: int = 0) -> Request:
    return Request(
        _Handler(task),
        [Item(data=i, n_tokens=8) for i in range(n)],
        {},
        key=(task, None),
        single=n == 1,
        priority=priority,
    )


def test_two_backlogged_tasks_are_served_in_proportion_to_their_shares() -> None:
    q = BatchQueue(max_batch_size=1, max_batch_tokens=10_000, shares={"translation": 3})
    for i in range(60):
        q.push(_req("translation"), now=float(i))
        q.push(_req("summarization"), now=float(i))
    served = Counter(s.request.handler.task for s in q.take_first(100.0, 40))
    assert served == {"translation": 30, "summarization": 10}
    # Static batching (one task per batch) follows the same order.
    q2 = BatchQueue(max_batch_size=1, max_batch_tokens=10_000, shares={"translation": 3})
    for i in range(60):
        q2.push(_req("translation"), now=float(i))
        q2.push(_req("summarization"), now=float(i))
    served2 = Counter(q2.take(100.0)[0].request.handler.task for _ in range(40))
    assert served2 == {"translation": 30, "summarization": 10}


def test_an_idle_task_banks_no_credit_and_a_lone_task_gets_everything() -> None:
    q = BatchQueue(max_batch_size=1, max_batch_tokens=10_000)
    for i in range(50):
        q.push(_req("summarization"), now=float(i))
    assert len(q.take_first(100.0, 50)) == 50  # alone: everything, whatever its share
    for i in range(20):
        q.push(_req("summarization"), now=100.0 + i)
    # translation was idle while summarization was served 50 items: it starts level, not 50 items ahead.
    q.push(_req("translation", n=20), now=130.0)
    served = Counter(s.request.handler.task for s in q.take_first(200.0, 20))
    assert served == {"translation": 10, "summarization": 10}


def test_priority_classes_come_before_shares_and_aging_still_bounds_the_batch_class() -> None:
    q = BatchQueue(max_batch_size=1, max_batch_tokens=10_000, aging_s=2.0, shares={"summarization": 100})
    q.push(_req("summarization", n=3, priority=1), now=0.0)
    q.push(_req("translation", n=3, priority=0), now=0.5)
    first = q.take_first(1.0, 3)
    assert [s.request.priority for s in first] == [0, 0, 0]
    q.push(_req("translation", n=2, priority=0), now=1.5)
    # At 2.5 s the batch item has waited past aging_s and is older than the interactive head: it goes first.
    assert q.take_first(2.5, 1)[0].request.handler.task == "summarization"


def test_urgent_only_takes_interactive_and_aged_items() -> None:
    q = BatchQueue(max_batch_size=1, max_batch_tokens=10_000, aging_s=2.0)
    q.push(_req("summarization", n=2, priority=1), now=0.0)
    assert q.take_first(1.0, 5, urgent_only=True) == []
    q.push(_req("translation", priority=0), now=1.0)
    got = q.take_first(1.5, 5, urgent_only=True)
    assert [s.request.handler.task for s in got] == ["translation"]
    got = q.take_first(2.5, 5, urgent_only=True)  # aged past 2 s
    assert [s.request.handler.task for s in got] == ["summarization", "summarization"]
    assert len(q) == 0 and q.task_counts() == {}


def test_waiting_counts_per_class_and_task_follow_removal() -> None:
    q = BatchQueue(max_batch_size=4, max_batch_tokens=10_000)
    a, b = _req("translation", n=2), _req("summarization", n=3, priority=1)
    q.push(a, now=0.0)
    q.push(b, now=0.0)
    assert q.waiting() == {(0, "translation"): 2, (1, "summarization"): 3}
    assert q.remove(b) == 3
    assert q.waiting() == {(0, "translation"): 2} and q.task_counts() == {"translation": 2}


def test_fair_slots_divide_by_share() -> None:
    fs = FairShare({"translation": 3})
    assert fs.fair_slots(8, ["translation", "summarization"]) == {"translation": 6.0, "summarization": 2.0}


# preempt.decide --------------------------------------------------------------------------------------------------
def _rows(*spec: tuple[int, str, int, float]) -> list[RowView]:
    return [RowView(rid, task, prio, sub) for rid, task, prio, sub in spec]


def test_always_pauses_every_batch_row_while_interactive_work_waits_or_runs() -> None:
    running = _rows((1, "summarization", 1, 0.0), (2, "summarization", 1, 0.5), (3, "translation", 0, 0.9))
    d = decide(running, [], {}, slots=8, always=True, share=FairShare(), aging_s=2.0)
    assert sorted(d.pause) == [1, 2] and d.urgent_only and d.take == 7
    # No interactive work: nothing pauses, paused batch rows come back (oldest first) before new items.
    paused = _rows((1, "summarization", 1, 0.0), (2, "summarization", 1, 0.5))
    d = decide([], paused, {(1, "summarization"): 4}, slots=8, always=True, share=FairShare(), aging_s=2.0)
    assert d.pause == [] and d.resume == [1, 2] and d.take == 6 and not d.urgent_only


def test_a_batch_row_that_waited_past_aging_is_not_paused_and_is_resumed_even_under_interactive_load() -> (
    None
):
    aged = RowView(1, "summarization", 1, 0.0, waited=2.1)  # queued 2.1 s before it joined
    running = [aged, RowView(2, "translation", 0, 2.4)]
    paused = [RowView(3, "summarization", 1, 0.1, waited=2.0)]  # paused for 2 s
    d = decide(running, paused, {}, slots=4, always=True, share=FairShare(), aging_s=2.0)
    assert d.pause == [] and d.resume == [3]


def test_a_long_running_batch_row_has_not_waited_and_still_steps_aside() -> None:
    # Submitted 30 s ago but served since: running is not waiting, so it pauses for interactive work.
    running = [RowView(1, "summarization", 1, 0.0, waited=0.3), RowView(2, "translation", 0, 29.9)]
    d = decide(running, [], {}, slots=4, always=True, share=FairShare(), aging_s=2.0)
    assert d.pause == [1]


def test_a_rows_waiting_time_counts_its_queueing_and_its_pauses_not_its_running() -> None:
    from hf_provider.scheduling.continuous import _RequestRow
    from hf_provider.scheduling.queue import Slot

    req = _req("summarization", priority=1)
    row = _RequestRow(None, Slot(req, 0, enqueued=0.5), started=1.5)  # type: ignore[arg-type]
    row.rid = 7
    assert row.view(9.0).waited == 1.0  # queued 1 s; running since is not waiting
    row.paused(10.0, True)
    row.paused(10.5, True)  # paused twice: the first time counts
    assert row.view(11.0).waited == 2.0
    row.paused(11.5, False)
    assert row.view(40.0).waited == 2.5 and row.view(40.0).effective(2.0) == 0  # aged by waiting 2.5 s


def test_when_full_pauses_only_as_many_batch_rows_as_interactive_items_need() -> None:
    running = _rows(*[(i, "summarization", 1, float(i)) for i in range(4)])
    d = decide(running, [], {(0, "translation"): 1}, slots=4, always=False, share=FairShare(), aging_s=9)
    assert d.pause == [3] and d.take == 1  # the newest batch row: it has done the least work
    d = decide(running, [], {(0, "translation"): 1}, slots=5, always=False, share=FairShare(), aging_s=9)
    assert d.pause == [] and d.take == 1  # a free slot: nobody pauses


@pytest.mark.parametrize("by_share", [True, False])
def test_a_full_engine_gives_an_under_share_task_a_slot_by_pausing_the_most_over_share_one(
    by_share: bool,
) -> None:
    running = _rows(*[(i, "summarization", 0, float(i)) for i in range(8)])
    share = FairShare({"translation": 3})
    d = decide(
        running,
        [],
        {(0, "translation"): 5},
        slots=8,
        always=True,
        share=share,
        aging_s=2,
        by_share=by_share,
    )
    assert d.pause == ([7] if by_share else []) and d.take == (1 if by_share else 0)
    # Once translation holds its share (6 of 8), summarization keeps the rest.
    running = _rows(
        *[(i, "translation", 0, float(i)) for i in range(6)],
        (6, "summarization", 0, 0.0),
        (7, "summarization", 0, 0.0),
    )
    d = decide(running, [], {(0, "translation"): 5}, slots=8, always=True, share=share, aging_s=2)
    assert d.pause == []


def test_paused_rows_are_bounded() -> None:
    running = _rows(*[(i, "summarization", 1, float(i)) for i in range(4)])
    paused = _rows(*[(10 + i, "summarization", 1, float(i)) for i in range(3)])
    d = decide(
        running,
        paused,
        {(0, "translation"): 4},
        slots=4,
        always=True,
        share=FairShare(),
        aging_s=9,
        max_paused=4,
    )
    assert len(d.pause) == 1  # one more fits under the cap of 4 paused rows


# joining late (preempt._late_joiners) ------------------------------------------------------------------------------
SHARE_3_1 = FairShare({"translation": 3, "summarization": 1})


def _hold(
    running: list[RowView],
    queued: dict[tuple[int, str], int],
    held: dict[tuple[int, str], int] | None = None,
    *,
    slots: int = 8,
    by_share: bool = True,
    share: FairShare = SHARE_3_1,
) -> Any:
    return decide(
        running,
        [],
        queued,
        slots=slots,
        always=False,
        share=share,
        aging_s=9,
        by_share=by_share,
        held=held,
        hold_steps=12,
    )


def test_a_smaller_share_waits_while_a_larger_shares_rows_run_then_joins_after_hold_steps() -> None:
    running = _rows((1, "translation", 0, 0.5), (2, "summarization", 0, 0.1))
    queued = {(0, "summarization"): 3, (0, "translation"): 1}
    d = _hold(running, queued)
    assert (0, "summarization") in d.hold and (0, "translation") not in d.hold and d.take == 6
    assert (0, "text2text-generation") in d.hold  # a rule: a task queued after the decision waits too
    assert (0, "summarization") in _hold(running, queued, {(0, "summarization"): 11}).hold
    assert (0, "summarization") not in _hold(running, queued, {(0, "summarization"): 12}).hold  # it joins now


def test_a_larger_share_that_joins_now_makes_a_smaller_one_wait_on_an_idle_engine() -> None:
    d = _hold([], {(0, "summarization"): 3, (0, "translation"): 1})
    assert (0, "summarization") in d.hold and (0, "translation") not in d.hold and d.take == 8


def test_nothing_waits_without_a_larger_share_running_or_without_shares() -> None:
    queued = {(0, "summarization"): 3}
    key = (0, "summarization")
    assert key not in _hold(_rows((2, "summarization", 0, 0.1)), queued).hold  # its own task only
    assert key not in _hold([], queued).hold  # an idle engine
    equal = FairShare({"translation": 1})
    assert key not in _hold(_rows((1, "translation", 0, 0.5)), queued, share=equal).hold
    assert key not in _hold(_rows((1, "translation", 0, 0.5)), queued, by_share=False).hold


def test_only_a_running_row_of_the_same_or_a_more_urgent_class_makes_a_queue_wait() -> None:
    queued = {(0, "summarization"): 2, (1, "summarization"): 2}
    bulk = _hold(_rows((1, "translation", 1, 0.5)), queued).hold
    assert (1, "summarization") in bulk and (0, "summarization") not in bulk  # interactive items do not wait
    inter = _hold(_rows((1, "translation", 0, 0.5)), queued).hold
    assert (0, "summarization") in inter and (1, "summarization") in inter


def test_a_waiting_queue_does_not_make_a_full_engine_pause_rows_for_it() -> None:
    # Summarization is under its share (0 of 2 fair slots) but waits to join: pausing a translation row for it
    # would only free a slot nobody takes, and resume it the next step.
    running = _rows(*[(i, "translation", 0, float(i)) for i in range(8)])
    d = _hold(running, {(0, "summarization"): 4})
    assert (0, "summarization") in d.hold and d.pause == [] and d.take == 0
    d = _hold(running, {(0, "summarization"): 4}, {(0, "summarization"): 12})
    assert (
        (0, "summarization") not in d.hold and d.pause == [7] and d.take == 1
    )  # it may join: it gets a slot


def test_take_first_skips_held_queues_and_keeps_their_order() -> None:
    q = BatchQueue(max_batch_size=8, max_batch_tokens=10_000, shares={"translation": 3})
    for i in range(3):
        q.push(_req("summarization"), 0.1 * i)
    q.push(_req("translation"), 1.0)
    got = q.take_first(2.0, 4, hold={(0, "summarization")})
    assert [s.request.handler.task for s in got] == ["translation"]
    assert [s.enqueued for s in q.take_first(2.0, 4)] == [0.0, 0.1, 0.2]  # released: oldest first, together
