"""The error store: counts, first and last seen, the last five samples, survival across reopening, retention;
and the reporter in front of it (one report per exception, writes off the caller's thread, the metric)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from hf_provider.reporting.reporter import Reporter
from hf_provider.reporting.reports import Report
from hf_provider.reporting.store import MAX_SAMPLES, ErrorStore


def report(fp: str, ts: float, i: int = 0, model: str = "lm") -> Report:
    return Report(
        error_class="internal", exc_type="RuntimeError", message=f"boom {i}", model=model, phase="forward",
        fingerprint=fp, ts=ts, request_id=f"req-{i}",
    )  # fmt: skip


def test_counts_first_last_seen_and_five_newest_samples(tmp_path: Path) -> None:
    store = ErrorStore(tmp_path / "errors.db")
    store.write([report("a", 100.0 + i, i) for i in range(4)])
    store.write([report("a", 50.0, 99)])  # late arrival: older first_seen, does not become the newest message
    store.write([report("a", 200.0 + i, 10 + i) for i in range(4)] + [report("b", 150.0, 7, "t5")])
    groups = store.groups()
    assert [g["fingerprint"] for g in groups] == ["a", "b"]  # most recently seen first
    a = groups[0]
    assert a["count"] == 9 and a["first_seen"] == 50.0 and a["last_seen"] == 203.0
    assert a["message"] == "boom 13"
    assert len(a["samples"]) == MAX_SAMPLES
    assert [s["request_id"] for s in a["samples"]] == ["req-13", "req-12", "req-11", "req-10", "req-99"]
    assert store.groups(model="t5")[0]["fingerprint"] == "b"
    assert store.groups(since=201.0)[0]["fingerprint"] == "a" and len(store.groups(since=201.0)) == 1
    assert store.groups(error_class="oom") == []
    store.close()


def test_groups_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "errors.db"
    store = ErrorStore(path)
    store.write([report("a", 1.0, 1), report("a", 2.0, 2)])
    store.close()
    again = ErrorStore(path)
    again.write([report("a", 3.0, 3)])
    (g,) = again.groups()
    assert g["count"] == 3 and g["first_seen"] == 1.0 and len(g["samples"]) == 3
    again.close()


def test_retention_deletes_old_groups_and_their_samples(tmp_path: Path) -> None:
    store = ErrorStore(tmp_path / "errors.db")
    store.write([report("old", 10.0), report("new", 1000.0)])
    assert store.expire(before=500.0) == 1
    assert [g["fingerprint"] for g in store.groups()] == ["new"]
    rows = sqlite3.connect(tmp_path / "errors.db").execute("SELECT DISTINCT fingerprint FROM error_samples")
    assert [r[0] for r in rows] == ["new"]
    store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "errors.db"
    ErrorStore(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_version VALUES (99)")
    db.commit()
    db.close()
    with pytest.raises(RuntimeError, match="newer hf-provider"):
        ErrorStore(path)


def test_reporter_reports_each_call_and_counts(tmp_path: Path) -> None:
    counted: list[tuple[str, str]] = []
    clock = [1000.0]
    rep = Reporter(
        ErrorStore(tmp_path / "errors.db"), known_models=lambda: ["lm"], count=lambda m, c: counted.append((m, c)),
        clock=lambda: clock[0], retention_s=60,
    )  # fmt: skip
    exc = RuntimeError("x")
    # One call per failed request (the outcome path calls it once per request): a batch's error object that
    # failed two requests is two occurrences of one group, and no flag on the exception hides the second.
    assert rep.report(exc, model="lm", phase="forward") is not None
    assert rep.report(exc, model="lm", phase="forward") is not None
    assert not hasattr(exc, "hfp_reported")
    rep.report(ValueError("y"), model="hf_secret_model_name_123", inputs=["secret text"])
    assert counted == [("lm", "internal"), ("lm", "internal"), ("-", "internal")]
    groups = rep.groups()
    assert {g["model"] for g in groups} == {"lm", "-"}
    assert next(g for g in groups if g["model"] == "lm")["count"] == 2
    sample = next(g for g in groups if g["model"] == "-")["samples"][0]
    assert sample["inputs"]["chars"] == len("secret text") and "text" not in sample["inputs"]
    clock[0] += 120
    assert rep.expire() == 2
    rep.close()


def test_reporter_writes_on_its_own_thread(tmp_path: Path) -> None:
    written = threading.Event()
    store = ErrorStore(tmp_path / "errors.db")
    original = store.write

    def write(reports, **kwargs):  # type: ignore[no-untyped-def]
        assert threading.current_thread().name == "hfp-error-reports"
        folded = original(reports, **kwargs)
        written.set()
        return folded

    store.write = write  # type: ignore[method-assign]
    rep = Reporter(store)
    rep.start()
    rep.report(RuntimeError("x"), model="-")
    assert written.wait(10)
    assert store.groups()[0]["count"] == 1
    rep.close()


def test_refusals_fold_into_one_pending_report_and_the_count_stays_exact(tmp_path: Path) -> None:
    from hf_provider.errors import Overloaded

    counted: list[tuple[str, str]] = []
    clock = [1000.0]
    rep = Reporter(
        ErrorStore(tmp_path / "errors.db"), known_models=lambda: ["m"], count=lambda m, c: counted.append((m, c)),
        clock=lambda: clock[0],
    )  # fmt: skip
    built = [
        rep.report(Overloaded(f"queue wait {i}.{i}s", model="m"), model="m", phase="parse")
        for i in range(300)
    ]
    assert sum(r is not None for r in built) == 1  # one report built, 299 refusals counted into it
    clock[0] += 5
    rep.flush()  # written: the next refusal builds a new report (a fresh sample)
    assert rep.report(Overloaded("queue wait 9.9s", model="m"), model="m", phase="parse") is not None
    rep.report(Overloaded("queue wait 1.0s", model="m"), model="m", phase="load")  # another phase: its own
    [group] = [g for g in rep.groups() if g["phase"] == "parse"]
    assert group["count"] == 301 and group["last_seen"] == 1005.0 and len(group["samples"]) == 2
    assert len(counted) == 302 and set(counted) == {("m", "overloaded")}
    rep.close()


def test_refusals_for_random_unknown_model_names_fold_into_one_report() -> None:
    from hf_provider.errors import Overloaded

    rep = Reporter(ErrorStore(None), known_models=lambda: ["m"])
    built = [rep.report(Overloaded("queue full"), model=f"rand-{i}", phase="parse") for i in range(50)]
    assert sum(r is not None for r in built) == 1  # keyed by "-", not by the name the client sent
    (group,) = rep.groups()
    assert group["count"] == 50 and group["model"] == "-"
    rep.close()
