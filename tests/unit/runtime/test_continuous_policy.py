"""The continuous-batching policy (runtime/continuous/policy.py): pure, driven with a fake clock."""

from __future__ import annotations

import random

import pytest

from hf_provider.runtime.continuous.policy import (
    DECODE,
    PREFILL,
    WAITING,
    SlotPolicy,
    bucket,
    prompt_bucket,
)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def policy(slots: int = 2, max_len: int = 64, chunk: int = 8) -> tuple[SlotPolicy, Clock]:
    clock = Clock()
    return SlotPolicy(slots, max_len, chunk, clock=clock, kv_step=4), clock


def run(p: SlotPolicy, finished: set[object] = frozenset()) -> object:
    """One step as the engine runs it: plan, advance, then the rows that ended leave."""
    plan = p.plan()
    p.advance(plan)
    for row in finished:
        p.remove(row)
    p.check()
    return plan


def test_bad_rows_and_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="slot length"):
        policy(max_len=16)[0].add("a", 10, 17)
    p, _ = policy()
    with pytest.raises(ValueError):
        p.add("a", 0, 4)
    p.add("a", 2, 4)
    with pytest.raises(ValueError, match="already"):
        p.add("a", 2, 4)
    with pytest.raises(ValueError):
        SlotPolicy(0, 16, 8, clock=Clock())


def test_rows_join_at_the_next_step_and_wait_while_the_slots_are_full() -> None:
    p, clock = policy(slots=2)
    for r in "abc":
        p.add(r, 3, 10)
    assert p.free_slots == -1  # promised: c waits
    plan = run(p)
    assert [c.row for c in plan.prefill] == ["a", "b"] and p.phase("c") == WAITING
    assert all(c.last for c in plan.prefill)
    assert p.phase("a") == p.phase("b") == DECODE
    clock.t += 2.5
    plan = run(p, finished={"a"})  # a ends after its first decode step
    assert [r for r, _ in plan.decode] == ["a", "b"] and [pos for _, pos in plan.decode] == [3, 3]
    assert p.phase("c") == WAITING and p.waited("c") is None
    plan = run(p)  # c takes a's slot at the next step, while b keeps decoding
    assert [r for r, _ in plan.decode] == ["b"] and [c.row for c in plan.prefill] == ["c"]
    assert p.waited("c") == pytest.approx(2.5)
    assert p.phase("c") == DECODE and p.free_slots == 0


def test_a_long_prompt_is_chunked_and_never_stalls_the_decoding_rows() -> None:
    p, _ = policy(slots=3, chunk=8)
    p.add("short", 2, 40)
    run(p)
    p.add("long", 30, 40)
    seen = []
    while p.phase("long") != DECODE:
        plan = run(p)
        assert [r for r, _ in plan.decode] == ["short"]  # decodes in every step of the long prefill
        assert sum(c.length for c in plan.prefill) <= 8
        seen.append((plan.prefill[0].start, plan.prefill[0].length, plan.prefill[0].last))
    assert seen == [(0, 8, False), (8, 8, False), (16, 8, False), (24, 6, True)]
    assert p.rows["long"].length == 30


def test_the_prefill_budget_is_shared_oldest_first() -> None:
    p, _ = policy(slots=3, chunk=8)
    p.add("a", 6, 10)
    p.add("b", 6, 10)
    p.add("c", 6, 10)
    plan = p.plan()
    assert [(c.row, c.length) for c in plan.prefill] == [("a", 6), ("b", 2)]
    assert plan.prefill_width == 8 and plan.prefill_kv == 8
    p.advance(plan)
    assert p.phase("a") == DECODE and p.phase("b") == PREFILL and p.rows["b"].length == 2


def test_a_cancelled_row_frees_its_slot_at_once_whatever_its_phase() -> None:
    p, _ = policy(slots=2, chunk=4)
    p.add("dec", 2, 20)
    run(p)
    p.add("pre", 12, 20)
    p.add("wait", 2, 20)
    run(p)
    assert (p.phase("dec"), p.phase("pre"), p.phase("wait")) == (DECODE, PREFILL, WAITING)
    p.remove("pre")  # mid-prefill
    p.check()
    assert p.free_slots == 0
    plan = run(p)
    assert [c.row for c in plan.prefill] == ["wait"]
    p.remove("wait")
    p.remove("dec")
    p.remove("never-added")  # a no-op
    p.check()
    assert p.free_slots == 2 and len(p) == 0 and p.n_decode == 0


def test_decoding_rows_stay_in_the_first_slots_through_moves() -> None:
    p, _ = policy(slots=4, chunk=64)
    for r in "abcd":
        p.add(r, 3 + ord(r) % 3, 30)
    run(p)
    assert [p.slot(r) for r in "abcd"] == [0, 1, 2, 3]
    run(p)
    p.remove("a")  # the last decoding row (d) moves into slot 0, with every position it wrote
    plan = p.plan()
    assert plan.moves == [(3, 0, p.rows["d"].length, False)]
    assert p.slot("d") == 0 and [r for r, _ in plan.decode] == ["d", "b", "c"]
    assert plan.decode_kv == bucket(max(pos for _, pos in plan.decode) + 1, 4, 64)


def test_random_joins_and_leaves_keep_the_layout_consistent() -> None:
    rng = random.Random(7)
    p, clock = policy(slots=5, max_len=48, chunk=10)
    live: dict[int, int] = {}  # row -> tokens it still has to generate
    next_id = 0
    for _ in range(400):
        clock.t += 0.01
        for _ in range(rng.randrange(3)):
            if p.free_slots > 0:
                prompt = rng.randrange(1, 30)
                new = rng.randrange(1, 48 - prompt + 1)
                p.add(next_id, prompt, prompt + new)
                live[next_id] = new
                next_id += 1
        plan = p.plan()
        slots = [c.slot for c in plan.prefill] + list(range(len(plan.decode)))
        assert len(slots) == len(set(slots))  # no two rows of a step share a slot
        for row, pos in plan.decode:
            assert pos < p.rows[row].total_len
        p.advance(plan)
        ended = {r for r, _ in plan.decode} | {c.row for c in plan.prefill if c.last}
        for row in ended:
            live[row] -= 1
        done = {r for r in ended if live[r] == 0}
        if live and rng.random() < 0.1:
            done.add(rng.choice(list(live)))  # a cancellation, whatever the row's phase
        for row in done:
            p.remove(row)
            live.pop(row)
        p.check()
    assert next_id > 50


def test_buckets() -> None:
    assert [bucket(n, 32, 100) for n in (1, 32, 33, 99, 100)] == [32, 32, 64, 100, 100]
    assert [prompt_bucket(n, 512) for n in (1, 8, 9, 100, 512)] == [8, 8, 16, 128, 512]
    assert prompt_bucket(300, 300) == 300


def test_new_prompts_wait_briefly_for_company_while_rows_decode() -> None:
    clock = Clock()
    p = SlotPolicy(8, 64, 16, clock=clock, prefill_wait_s=0.02, prefill_rows=3)
    p.add("a", 2, 30)
    assert [c.row for c in run(p).prefill] == ["a"]  # idle: no waiting
    p.add("b", 2, 30)
    clock.t += 0.005
    plan = run(p)
    assert plan.prefill == [] and [r for r, _ in plan.decode] == ["a"]
    p.add("c", 2, 30)
    clock.t += 0.016  # b has waited 21 ms: b and c share one prefill
    assert [c.row for c in run(p).prefill] == ["b", "c"]
    for r in "def":  # three ready at once: no wait
        p.add(r, 2, 30)
    assert [c.row for c in run(p).prefill] == ["d", "e", "f"]
    p.add("long", 20, 40)  # a chunk's worth of tokens: no wait
    assert [c.row for c in run(p).prefill] == ["long"]
    assert run(p).prefill[0].row == "long"  # a started prompt continues at every step
