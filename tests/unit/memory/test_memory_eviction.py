"""Eviction and keep-alive policy: ordering rules, exclusions, minimal plans, expiry. No clocks, no sleeps."""

from __future__ import annotations

from hf_provider.memory.eviction import Resident, eviction_order, expired, next_expiry, plan_eviction

NOW = 1000.0


def res(name: str, **kw: object) -> Resident:
    base: dict[str, object] = {"pool": "host", "bytes": 100, "last_used": 900.0, "loaded_at": 0.0}
    base.update(kw)
    return Resident(name=name, **base)  # type: ignore[arg-type]


def test_fits_already_needs_no_eviction() -> None:
    assert plan_eviction([res("a")], "host", need_bytes=50, free_bytes=50, now=NOW) == []


def test_lowest_priority_goes_first_regardless_of_recency() -> None:
    rs = [res("hi-old", priority=5, last_used=1.0), res("lo-new", priority=0, last_used=999.0)]
    assert plan_eviction(rs, "host", need_bytes=100, free_bytes=0, now=NOW) == ["lo-new"]


def test_same_priority_least_recently_used_first() -> None:
    rs = [res("b", last_used=500.0), res("a", last_used=100.0), res("c", last_used=900.0)]
    assert [r.name for r in eviction_order(rs, "host", NOW, 0)] == ["a", "b", "c"]
    assert plan_eviction(rs, "host", need_bytes=150, free_bytes=0, now=NOW) == ["a", "b"]


def test_ties_broken_by_name_for_determinism() -> None:
    rs = [res("z"), res("m"), res("a")]
    assert [r.name for r in eviction_order(rs, "host", NOW, 0)] == ["a", "m", "z"]


def test_negative_priority_before_zero() -> None:
    rs = [res("zero", priority=0, last_used=1.0), res("neg", priority=-1, last_used=999.0)]
    assert plan_eviction(rs, "host", 100, 0, NOW) == ["neg"]


def test_minimal_prefix_counts_free_bytes() -> None:
    rs = [
        res("a", bytes=30, last_used=1.0),
        res("b", bytes=30, last_used=2.0),
        res("c", bytes=30, last_used=3.0),
    ]
    assert plan_eviction(rs, "host", need_bytes=100, free_bytes=40, now=NOW) == ["a", "b"]
    assert plan_eviction(rs, "host", need_bytes=70, free_bytes=40, now=NOW) == ["a"]


def test_pinned_never_evicted() -> None:
    rs = [res("pinned", pinned=True, priority=-10, last_used=0.0), res("other", last_used=999.0)]
    assert plan_eviction(rs, "host", 100, 0, NOW) == ["other"]
    assert plan_eviction([rs[0]], "host", 100, 0, NOW) is None


def test_in_flight_skipped_now() -> None:
    rs = [res("busy", in_flight=2, last_used=0.0), res("idle", last_used=999.0)]
    assert plan_eviction(rs, "host", 100, 0, NOW) == ["idle"]
    # once its work finishes, the older model is the first to go
    done = [res("busy", in_flight=0, last_used=0.0), res("idle", last_used=999.0)]
    assert plan_eviction(done, "host", 100, 0, NOW) == ["busy"]


def test_min_residency_prevents_thrashing() -> None:
    rs = [res("fresh", loaded_at=NOW - 5, last_used=0.0), res("settled", loaded_at=NOW - 60, last_used=999.0)]
    assert plan_eviction(rs, "host", 100, 0, NOW, min_residency_s=30) == ["settled"]
    assert plan_eviction(rs, "host", 200, 0, NOW, min_residency_s=30) is None
    assert plan_eviction(rs, "host", 200, 0, NOW + 30, min_residency_s=30) == ["fresh", "settled"]


def test_only_models_in_the_pool_count() -> None:
    rs = [res("gpu", pool="cuda:0", last_used=0.0), res("cpu", pool="host", last_used=999.0)]
    assert plan_eviction(rs, "host", 100, 0, NOW) == ["cpu"]
    assert plan_eviction(rs, "cuda:0", 100, 0, NOW) == ["gpu"]
    assert plan_eviction(rs, "cuda:1", 100, 0, NOW) is None


def test_none_when_all_candidates_do_not_free_enough() -> None:
    rs = [res("a", bytes=100), res("b", bytes=100)]
    assert plan_eviction(rs, "host", need_bytes=300, free_bytes=50, now=NOW) is None
    assert plan_eviction(rs, "host", need_bytes=250, free_bytes=50, now=NOW) == ["a", "b"]


def test_expired_keep_alive_rules() -> None:
    rs = [
        res("never", keep_alive=None, last_used=0.0),
        res("zero", keep_alive=0.0, last_used=NOW),
        res("zero-busy", keep_alive=0.0, last_used=NOW, in_flight=1),
        res("five-min-idle", keep_alive=300.0, last_used=NOW - 300),
        res("five-min-recent", keep_alive=300.0, last_used=NOW - 299),
        res("pinned", keep_alive=0.0, pinned=True, last_used=0.0),
    ]
    assert expired(rs, NOW) == ["zero", "five-min-idle"]


def test_next_expiry_for_a_sleeping_loop() -> None:
    rs = [res("a", keep_alive=300.0, last_used=NOW - 100), res("b", keep_alive=60.0, last_used=NOW - 10)]
    assert next_expiry(rs, NOW) == 50.0
    assert next_expiry([res("a", keep_alive=0.0, last_used=NOW - 1)], NOW) == 0.0
    assert next_expiry([res("a"), res("p", keep_alive=1.0, pinned=True)], NOW) is None
