"""A bounded errors.db: past `max_groups`, reports of new fingerprints fold into one overflow group per error
class and are counted; groups already stored keep counting; retention still expires groups (overflow ones too)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from hf_provider.reporting.reporter import Reporter
from hf_provider.reporting.reports import Report
from hf_provider.reporting.store import MAX_GROUPS, MAX_SAMPLES, OVERFLOW, ErrorStore
from hf_provider.settings import ReportingSettings


def report(fp: str, ts: float, error_class: str = "internal", i: int = 0) -> Report:
    return Report(
        error_class=error_class, exc_type="RuntimeError", message=f"boom {i}", model="lm", phase="forward",
        fingerprint=fp, ts=ts, request_id=f"req-{i}",
    )  # fmt: skip


def counts(store: ErrorStore) -> dict[str, int]:
    return {g["fingerprint"]: g["count"] for g in store.groups(limit=10_000)}


def test_five_thousand_distinct_kinds_leave_max_groups_and_count_the_rest(tmp_path: Path) -> None:
    heard: list[tuple[str, int]] = []
    rep = Reporter(
        ErrorStore(tmp_path / "errors.db"), max_groups=50, count_overflow=lambda c, n: heard.append((c, n))
    )
    for i in range(5000):
        # Distinct exception types are distinct kinds (the code of a non-ProviderError is its type's name).
        base = TimeoutError if i % 5 == 0 else RuntimeError
        rep.report(type(f"Failure{i}", (base,), {})("x"), model="lm", phase="forward")
        if i % 700 == 0:  # batches that cross the bound midway and batches wholly past it
            rep.flush()
    rep.flush()
    found = counts(rep.store)
    kept = {fp: n for fp, n in found.items() if not fp.startswith(OVERFLOW)}
    overflow = {fp: n for fp, n in found.items() if fp.startswith(OVERFLOW)}
    assert len(kept) == 50 and set(kept.values()) == {1}
    assert set(overflow) == {"overflow:internal", "overflow:timeout"}
    assert sum(overflow.values()) == 5000 - 50 == sum(rep.overflowed.values())
    assert rep.overflowed == {
        "internal": overflow["overflow:internal"],
        "timeout": overflow["overflow:timeout"],
    }
    assert sum(n for _, n in heard) == 4950 and {c for c, _ in heard} == {"internal", "timeout"}
    g = next(g for g in rep.groups() if g["fingerprint"] == "overflow:timeout")
    assert g["model"] == "-" and g["phase"] == "-" and "max_groups = 50" in g["message"]
    assert len(g["samples"]) == MAX_SAMPLES and g["samples"][0]["exc_type"] == "Failure4995"  # newest first
    rep.close()


def test_an_existing_group_keeps_counting_past_the_bound(tmp_path: Path) -> None:
    store = ErrorStore(tmp_path / "errors.db")
    assert store.write([report("a", 1.0), report("b", 2.0)], max_groups=2) == {}
    folded = store.write([report("c", 3.0, i=1), report("a", 4.0), report("d", 5.0, "oom", 2)], max_groups=2)
    assert folded == {"internal": 1, "oom": 1}
    assert store.write([report("b", 6.0), report("c", 7.0, i=3)], max_groups=2) == {"internal": 1}
    assert counts(store) == {"a": 2, "b": 2, "overflow:internal": 2, "overflow:oom": 1}
    (ov,) = store.groups(error_class="internal", since=7.0)
    assert ov["first_seen"] == 3.0 and [s["request_id"] for s in ov["samples"]] == ["req-3", "req-1"]
    store.close()


def test_a_batch_alone_past_the_bound_keeps_its_first_groups(tmp_path: Path) -> None:
    store = ErrorStore(tmp_path / "errors.db")
    folded = store.write([report(f"g{i}", float(i)) for i in range(5)] + [report("g0", 9.0)], max_groups=3)
    assert folded == {"internal": 2}
    assert counts(store) == {"g0": 2, "g1": 1, "g2": 1, "overflow:internal": 2}
    store.close()


def test_the_default_bound_is_the_settings_default(tmp_path: Path) -> None:
    store = ErrorStore(tmp_path / "errors.db")
    assert store.write([report(f"g{i}", float(i)) for i in range(MAX_GROUPS + 3)]) == {"internal": 3}
    assert ReportingSettings().max_groups == MAX_GROUPS
    store.close()


def test_retention_expires_groups_overflow_included_and_frees_room(tmp_path: Path) -> None:
    store = ErrorStore(tmp_path / "errors.db")
    store.write([report("old", 10.0)], max_groups=1)
    assert store.write([report("late", 20.0)], max_groups=1) == {"internal": 1}
    assert store.expire(before=500.0) == 2
    assert store.write([report("new", 1000.0)], max_groups=1) == {}
    assert counts(store) == {"new": 1}
    rows = sqlite3.connect(tmp_path / "errors.db").execute("SELECT DISTINCT fingerprint FROM error_samples")
    assert [r[0] for r in rows] == ["new"]
    store.close()


def test_a_failing_overflow_hook_does_not_stop_the_write(tmp_path: Path) -> None:
    def broken(error_class: str, n: int) -> None:
        raise RuntimeError("metrics closed")

    rep = Reporter(ErrorStore(tmp_path / "errors.db"), max_groups=1, count_overflow=broken)
    rep.report(RuntimeError("x"), model="lm")
    rep.report(ValueError("y"), model="lm")
    rep.flush()
    assert rep.overflowed == {"internal": 1} and len(rep.groups()) == 2
    rep.close()


@pytest.mark.parametrize("bad", [0, -1])
def test_max_groups_below_one_is_refused(tmp_path: Path, bad: int) -> None:
    with pytest.raises(ValidationError, match="max_groups"):
        ReportingSettings(max_groups=bad)
    store = ErrorStore(None)
    with pytest.raises(ValueError, match="max_groups must be at least 1"):
        store.write([report("a", 1.0)], max_groups=bad)
    assert counts(store) == {}
