"""The version history store: append-only events, newest first, the rollback target, masked details."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_provider.lifecycle.history import VersionHistory, acting_as

A, B, C = "a" * 40, "b" * 40, "c" * 40


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def test_unknown_action_is_refused() -> None:
    store = VersionHistory(None)
    with pytest.raises(ValueError, match="unknown history action"):
        store.record("m", "upgrade", revision="v1", commit=A)


def test_no_previous_without_another_serving_commit() -> None:
    store = VersionHistory(None)
    assert store.previous("m", None) is None
    store.record("m", "load", revision="v1", commit=A)
    assert store.previous("m", A) is None  # only ever served A
    store.record("m", "swap", revision="v2", commit=B, outcome="failed", detail="boom")
    assert store.previous("m", A) is None  # a failed swap never served


def test_previous_toggles_between_the_last_two_commits_and_ignores_other_models() -> None:
    store = VersionHistory(None)
    store.record("m", "load", revision="v1", commit=A)
    store.record("m", "swap", revision="v2", commit=B)
    store.record("other", "swap", revision="x", commit=C)
    store.record("m", "canary", revision="v3", commit=C)  # a canary's candidate never served alone
    assert store.previous("m", B)["commit"] == A
    store.record("m", "rollback", revision="v1", commit=A)
    prev = store.previous("m", A)
    assert prev["commit"] == B and prev["revision"] == "v2"


def test_events_newest_first_with_actor_from_the_context(tmp_path: Path) -> None:
    path = tmp_path / "versions.db"
    store = VersionHistory(path, clock=Clock())
    store.record("m", "load", revision="v1", commit=A)
    with acting_as("admin"):
        store.record("m", "swap", revision="v2", commit=B)
    store.record("m", "rollback", revision="v1", commit=A, actor="cli")
    store.close()
    events = VersionHistory(path).events("m")  # reopened: the file holds them
    assert [e["action"] for e in events] == ["rollback", "swap", "load"]
    assert [e["actor"] for e in events] == ["cli", "admin", "request"]
    assert events[0]["ts"] > events[1]["ts"] > events[2]["ts"]
    assert set(events[0]) == {
        "id",
        "ts",
        "model",
        "action",
        "revision",
        "commit",
        "actor",
        "outcome",
        "detail",
    }
    assert VersionHistory(path).events("m", limit=1)[0]["action"] == "rollback"


def test_failure_detail_is_masked() -> None:
    store = VersionHistory(None)
    store.record(
        "m", "swap", revision="v2", commit=None, outcome="failed",
        detail="401 for https://hub/x with token hf_abcdefghijklmnopqrstuvwxyz0123",
    )  # fmt: skip
    detail = store.events("m")[0]["detail"]
    assert "hf_abcdefghijklmnopqrstuvwxyz0123" not in detail and "401" in detail


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "versions.db"
    store = VersionHistory(path)
    store._db.execute("INSERT INTO schema_version (version) VALUES (99)")
    store.close()
    with pytest.raises(RuntimeError, match="newer hf-provider"):
        VersionHistory(path)
