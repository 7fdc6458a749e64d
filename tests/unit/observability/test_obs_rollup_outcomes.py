"""Rollups keep client errors apart (schema 2): the upgrade of a schema-1 metrics.db, and error rates over rollups
and over both series paths that follow the raw definitions (server failures over all requests, 4xx beside)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hf_provider.observability import queries
from hf_provider.observability.observer import Observer
from hf_provider.observability.quantiles import N_BUCKETS
from hf_provider.observability.store import OUTCOME_COLUMNS, SCHEMA_VERSION, RequestHistoryStore
from hf_provider.types import OUTCOMES

T0 = 1_700_000_040.0  # a minute boundary
H = [f"h{i}" for i in range(N_BUCKETS)]

# metrics.db as hf-provider wrote it at schema 1, spelled out: the file an upgraded server finds.
V1_SCHEMA = f"""
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
CREATE TABLE requests (
    ts REAL NOT NULL, model TEXT NOT NULL, task TEXT NOT NULL, outcome TEXT NOT NULL,
    latency_ms REAL NOT NULL, items INTEGER NOT NULL, tokens INTEGER NOT NULL);
CREATE INDEX requests_ts ON requests (ts);
CREATE TABLE request_rollups (
    minute INTEGER NOT NULL, model TEXT NOT NULL, task TEXT NOT NULL,
    n INTEGER NOT NULL, ok INTEGER NOT NULL, errors INTEGER NOT NULL, rejected INTEGER NOT NULL,
    items INTEGER NOT NULL, tokens INTEGER NOT NULL,
    lat_sum REAL NOT NULL, lat_min REAL, lat_max REAL,
    {", ".join(f"{c} INTEGER NOT NULL" for c in H)},
    PRIMARY KEY (minute, model, task));
CREATE TABLE resources (ts REAL NOT NULL, name TEXT NOT NULL, key TEXT NOT NULL, value REAL NOT NULL);
CREATE INDEX resources_ts ON resources (ts);
CREATE TABLE resource_rollups (
    minute INTEGER NOT NULL, name TEXT NOT NULL, key TEXT NOT NULL,
    n INTEGER NOT NULL, total REAL NOT NULL, maxv REAL NOT NULL,
    PRIMARY KEY (minute, name, key));
INSERT INTO schema_version VALUES (1)
"""
# A minute still kept raw: 2 ok, 3 client errors, 1 error, 1 cancelled, 1 time-out, 1 refusal.
RAW_MINUTE = T0 + 120
RAW_OUTCOMES = ["ok", "ok", "client_error", "client_error", "client_error", "error", "cancelled", "timed_out"]
RAW_OUTCOMES += ["rejected"]


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _rollup(db: sqlite3.Connection, minute: float, n: int, ok: int, errors: int, rejected: int) -> None:
    hist = [0] * N_BUCKETS
    hist[0] = n - rejected  # where the latencies fall does not matter here
    db.execute(
        f"INSERT INTO request_rollups VALUES ({', '.join('?' * (12 + N_BUCKETS))})",
        [minute, "a", "embed", n, ok, errors, rejected, n, n, 1.0, 0.5, 0.5, *hist],
    )


def write_v1(path: Path, raw_floor: bool = True) -> None:
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    if raw_floor:  # absent until the first maintenance run: every raw row is still there
        db.execute("INSERT INTO meta VALUES ('raw_floor', ?)", (RAW_MINUTE,))
    # Past the raw retention: only the rollup is left, its errors lump 2 client errors and 1 failure.
    _rollup(db, T0, n=10, ok=6, errors=3, rejected=1)
    rows = [(RAW_MINUTE + i, "a", "embed", o, 0.5, 1, 1) for i, o in enumerate(RAW_OUTCOMES)]
    db.executemany("INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    _rollup(db, RAW_MINUTE, n=9, ok=2, errors=6, rejected=1)
    db.commit()
    db.close()


def _rollups(path: Path) -> dict[float, dict[str, int]]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        cols = ["n", *OUTCOME_COLUMNS.values()]
        return {
            r["minute"]: {c: r[c] for c in cols}
            for r in db.execute(f"SELECT minute, {', '.join(cols)} FROM request_rollups ORDER BY minute")
        }
    finally:
        db.close()


def test_every_outcome_has_a_rollup_column() -> None:
    assert set(OUTCOME_COLUMNS) == set(OUTCOMES)


@pytest.mark.parametrize("raw_floor", [True, False])
def test_a_v1_file_is_upgraded_keeps_its_rows_and_splits_the_minutes_still_kept_raw(
    tmp_path: Path, raw_floor: bool
) -> None:
    path = tmp_path / "metrics.db"
    write_v1(path, raw_floor)
    store = RequestHistoryStore(path)
    store.close()
    assert sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchall() == [
        (SCHEMA_VERSION,)
    ]
    rows = _rollups(path)
    # The old minute cannot be split: its errors keep the lumped meaning, the new columns are 0, n still adds up.
    assert rows[T0] == {
        "n": 10, "ok": 6, "errors": 3, "rejected": 1, "client_errors": 0, "cancelled": 0, "timed_out": 0,
    }  # fmt: skip
    assert rows[RAW_MINUTE] == {
        "n": 9, "ok": 2, "errors": 1, "rejected": 1, "client_errors": 3, "cancelled": 1, "timed_out": 1,
    }  # fmt: skip
    for r in rows.values():
        assert r["n"] == sum(r[c] for c in OUTCOME_COLUMNS.values())


def test_an_upgraded_file_rolls_up_new_requests_apart_and_stats_read_both(tmp_path: Path) -> None:
    write_v1(tmp_path / "metrics.db")
    clock = Clock(T0 + 180)
    obs = Observer(home=tmp_path, clock=clock)
    assert obs.store.path == tmp_path / "metrics.db"  # upgraded, not replaced by an in-memory history
    for outcome in ("ok", "client_error", "client_error", "error"):
        obs.request_done("a", "embed", "r", outcome, 0.002, items=1, tokens=1)
    obs.flush()
    assert _rollups(tmp_path / "metrics.db")[T0 + 180] == {
        "n": 4, "ok": 1, "errors": 1, "rejected": 0, "client_errors": 2, "cancelled": 0, "timed_out": 0,
    }  # fmt: skip
    clock.t = T0 + 239
    s = queries.stats(obs, "a", None, window_s=300)
    # rollup minute T0 (6 ok, 3 lumped errors, 1 refusal) + raw from RAW_MINUTE on (9 + 4 requests)
    assert s["requests"] == 23
    assert s["client_errors"] == 5 and s["errors"] == 3 + 1 + 1 and s["timed_out"] == 1
    assert s["error_rate"] == pytest.approx((5 + 2 + 1) / 23, abs=1e-6)
    assert s["client_error_rate"] == pytest.approx(5 / 23, abs=1e-6)
    obs.close()


def _traffic(obs: Observer, clock: Clock) -> list[tuple[float, str]]:
    """Two minutes: in each, 4 ok, 4 client errors, 1 error, 1 time-out, 1 refusal, 1 cancellation (12)."""
    outcomes = ["ok"] * 4 + ["client_error"] * 4 + ["error", "timed_out", "rejected", "cancelled"]
    sent = []
    for minute in (0, 1):
        for i, outcome in enumerate(outcomes):
            clock.t = T0 + minute * 60 + i * 4
            obs.request_done("a", "embed", "r", outcome, 0.003, items=1, tokens=1)
            sent.append((clock.t, outcome))
    return sent


def test_stats_over_rollups_count_server_failures_and_client_errors_apart() -> None:
    clock = Clock(T0)
    obs = Observer(home=None, clock=clock, raw_retention_s=3600, rollup_retention_s=86400)
    _traffic(obs, clock)
    obs.flush()
    clock.t = T0 + 2 * 3600
    obs.run_maintenance()
    assert obs.store.count("requests") == 0  # what follows reads rollups only
    s = queries.stats(obs, "a", None, window_s=3 * 3600)
    assert s["requests"] == 24 and s["ok"] == 8
    assert (s["client_errors"], s["errors"], s["timed_out"], s["rejected"], s["cancelled"]) == (8, 2, 2, 2, 2)
    assert s["error_rate"] == pytest.approx(6 / 24, abs=1e-6)
    assert s["client_error_rate"] == pytest.approx(8 / 24, abs=1e-6)
    obs.close()


@pytest.mark.parametrize("step", [10.0, 60.0])  # under a minute: raw rows; a minute: rollups
def test_series_error_rate_is_server_failures_over_all_requests(step: float) -> None:
    clock = Clock(T0)
    obs = Observer(home=None, clock=clock)
    sent = _traffic(obs, clock)
    clock.t = T0 + 119
    s = queries.series(obs, 600, step)
    expected: list[tuple[float, float] | None] = []
    for t in s["t"]:
        inside = [o for ts, o in sent if t <= ts < t + step]
        failed = sum(o in ("error", "timed_out", "rejected") for o in inside)
        client = inside.count("client_error")
        expected.append((failed / len(inside), client / len(inside)) if inside else None)
    got = [
        None if e is None else (e, c) for e, c in zip(s["error_rate"], s["client_error_rate"], strict=True)
    ]
    assert got == [None if x is None else pytest.approx(x, abs=1e-6) for x in expected]
    assert any(x and x[0] != x[1] for x in expected)  # the two series do tell different things
    if step == 60:
        assert [x for x in got if x] == [pytest.approx((3 / 12, 4 / 12))] * 2
    obs.close()
