"""Metric history in SQLite (`HFP_HOME/servers/<host>-<port>/metrics.db`, one per server): raw samples, one-minute
rollups, retention.

Only counts and timings are stored, never inputs or outputs. Every write also folds into the one-minute
rollup of its minute ("live" rollups), so charts over hours or days read at most one row per minute and model,
and retention only has to delete: raw rows older than the raw retention go (their minutes stay as rollups),
rollups older than the rollup retention go. `raw_floor` (in `meta`) records where raw rows stop being
complete; stats read raw rows from there on and rollups before it, so nothing is counted twice.

Rollups count each outcome in its own column (OUTCOME_COLUMNS), so error rates over rollups follow the same
definitions as over raw rows (`types.SERVER_FAILURES` for the headline, client errors beside it). Schema 1 had
ok / errors / rejected only, `errors` lumping client errors, failures, cancellations and time-outs; the upgrade
to schema 2 splits the minutes whose raw rows are still kept, and older rows keep the lumped `errors` (read as
server failures: the strict side) until the rollup retention drops them.

One connection guarded by one lock: writes come from the writer thread in batches, reads from admin requests.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from hf_provider.dbfile import Store
from hf_provider.observability.quantiles import N_BUCKETS, bucket_index
from hf_provider.types import SERVER_FAILURES

SCHEMA_VERSION = 2
MINUTE = 60
H_COLS = [f"h{i}" for i in range(N_BUCKETS)]

RequestRow = tuple[
    float, str, str, str, float, int, int
]  # ts, model, task, outcome, latency_ms, items, tokens
ResourceRow = tuple[float, str, str, float]  # ts, name, key (model / gpu index / ""), value

# Outcome -> its count column in request_rollups. From schema 2 on `errors` counts the outcome `error` alone.
OUTCOME_COLUMNS = {
    "ok": "ok",
    "error": "errors",
    "rejected": "rejected",
    "client_error": "client_errors",
    "cancelled": "cancelled",
    "timed_out": "timed_out",
}
_COUNTS = ["n", *OUTCOME_COLUMNS.values(), "items", "tokens"]  # summed on upsert
_REQ_COLS = ["minute", "model", "task", *_COUNTS, "lat_sum", "lat_min", "lat_max", *H_COLS]
_AT = {c: i for i, c in enumerate(_REQ_COLS)}  # a column's place in a rollup row (_rollup_requests)
_OUTCOME_AT = {o: _AT[c] for o, c in OUTCOME_COLUMNS.items()}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    ts REAL NOT NULL, model TEXT NOT NULL, task TEXT NOT NULL, outcome TEXT NOT NULL,
    latency_ms REAL NOT NULL, items INTEGER NOT NULL, tokens INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
CREATE TABLE IF NOT EXISTS request_rollups (
    minute INTEGER NOT NULL, model TEXT NOT NULL, task TEXT NOT NULL,
    n INTEGER NOT NULL, ok INTEGER NOT NULL, errors INTEGER NOT NULL, rejected INTEGER NOT NULL,
    client_errors INTEGER NOT NULL DEFAULT 0, cancelled INTEGER NOT NULL DEFAULT 0,
    timed_out INTEGER NOT NULL DEFAULT 0,
    items INTEGER NOT NULL, tokens INTEGER NOT NULL,
    lat_sum REAL NOT NULL, lat_min REAL, lat_max REAL,
    {", ".join(f"{c} INTEGER NOT NULL" for c in H_COLS)},
    PRIMARY KEY (minute, model, task));
CREATE TABLE IF NOT EXISTS resources (
    ts REAL NOT NULL, name TEXT NOT NULL, key TEXT NOT NULL, value REAL NOT NULL);
CREATE INDEX IF NOT EXISTS resources_ts ON resources (ts);
CREATE TABLE IF NOT EXISTS resource_rollups (
    minute INTEGER NOT NULL, name TEXT NOT NULL, key TEXT NOT NULL,
    n INTEGER NOT NULL, total REAL NOT NULL, maxv REAL NOT NULL,
    PRIMARY KEY (minute, name, key));
"""

_REQ_UPSERT = (
    f"INSERT INTO request_rollups ({', '.join(_REQ_COLS)}) VALUES ({', '.join('?' * len(_REQ_COLS))}) "
    "ON CONFLICT (minute, model, task) DO UPDATE SET "
    + "".join(f"{c} = {c} + excluded.{c}, " for c in [*_COUNTS, "lat_sum", *H_COLS])
    + "lat_min = min(coalesce(lat_min, excluded.lat_min), coalesce(excluded.lat_min, lat_min)), "
    "lat_max = max(coalesce(lat_max, excluded.lat_max), coalesce(excluded.lat_max, lat_max))"
)
_RES_UPSERT = (
    "INSERT INTO resource_rollups (minute, name, key, n, total, maxv) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (minute, name, key) DO UPDATE SET n = n + excluded.n, total = total + excluded.total, "
    "maxv = max(maxv, excluded.maxv)"
)

# Schema 1 -> 2: the new columns, then the minutes whose raw rows are all still kept (from raw_floor on) are
# counted again from them and `errors` loses what moved out. Older minutes cannot be split: they keep the lumped
# `errors` (with zeros beside it, so n stays their sum) until the rollup retention drops them.
_UPGRADE_1 = [
    *(
        f"ALTER TABLE request_rollups ADD COLUMN {c} INTEGER NOT NULL DEFAULT 0"
        for c in ("client_errors", "cancelled", "timed_out")
    ),
    "UPDATE request_rollups SET (client_errors, cancelled, timed_out) = ("
    "SELECT coalesce(sum(outcome = 'client_error'), 0), coalesce(sum(outcome = 'cancelled'), 0), "
    "coalesce(sum(outcome = 'timed_out'), 0) FROM requests r WHERE r.ts >= request_rollups.minute "
    f"AND r.ts < request_rollups.minute + {MINUTE} AND r.model = request_rollups.model "
    "AND r.task = request_rollups.task) "
    "WHERE minute >= (SELECT coalesce(max(value), -1e300) FROM meta WHERE key = 'raw_floor')",
    "UPDATE request_rollups SET errors = errors - client_errors - cancelled - timed_out",
]

# Series where the peak inside a bucket matters more than the mean.
PEAK_SERIES = frozenset({"queue_depth", "peak_working_bytes"})


def _filters(model: str | None, task: str | None) -> tuple[str, list[Any]]:
    sql, args = "", []
    if model is not None:
        sql += " AND model = ?"
        args.append(model)
    if task is not None:
        sql += " AND task = ?"
        args.append(task)
    return sql, args


class RequestHistoryStore(Store):
    """Requests and resource samples over time (metrics.db); lifecycle/history.py's VersionHistory is the other
    history: versions.db's loads, swaps and rollbacks."""

    SCHEMA, VERSION, STEPS = _SCHEMA, SCHEMA_VERSION, {1: _UPGRADE_1}

    # -- writes --

    def write(self, requests: list[RequestRow], resources: list[ResourceRow]) -> None:
        if not requests and not resources:
            return
        req_roll = _rollup_requests(requests)
        res_roll = _rollup_resources(resources)
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                if requests:
                    db.executemany("INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?, ?)", requests)
                    db.executemany(_REQ_UPSERT, req_roll)
                if resources:
                    db.executemany("INSERT INTO resources VALUES (?, ?, ?, ?)", resources)
                    db.executemany(_RES_UPSERT, res_roll)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def run_maintenance(
        self, now: float, raw_retention_s: float, rollup_retention_s: float
    ) -> dict[str, int]:
        """Drop raw rows older than the raw retention (their minutes remain as rollups) and old rollups."""
        raw_cut = math.floor((now - raw_retention_s) / MINUTE) * MINUTE
        roll_cut = now - rollup_retention_s
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                floor = max(raw_cut, self._raw_floor())
                out = {
                    "requests": db.execute("DELETE FROM requests WHERE ts < ?", (floor,)).rowcount,
                    "resources": db.execute("DELETE FROM resources WHERE ts < ?", (floor,)).rowcount,
                    "request_rollups": db.execute(
                        "DELETE FROM request_rollups WHERE minute + ? <= ?", (MINUTE, roll_cut)
                    ).rowcount,
                    "resource_rollups": db.execute(
                        "DELETE FROM resource_rollups WHERE minute + ? <= ?", (MINUTE, roll_cut)
                    ).rowcount,
                }
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('raw_floor', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (floor,),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return out

    def _raw_floor(self) -> float:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'raw_floor'").fetchone()
        return row[0] if row else float("-inf")

    # -- reads --

    def count(self, table: str) -> int:
        assert table in {"requests", "resources", "request_rollups", "resource_rollups"}
        with self._lock:
            return self._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    def window(self, start: float, end: float, model: str | None, task: str | None) -> dict[str, Any]:
        """Counts over [start, end]; exact latencies for the raw part, a histogram for the rolled-up part."""
        where, args = _filters(model, task)
        with self._lock:
            db = self._db
            floor = self._raw_floor()
            raw_start = max(start, floor)
            counts = {"ok": 0, "error": 0, "rejected": 0}
            items = tokens = 0
            for outcome, n, it, tk in db.execute(
                "SELECT outcome, count(*), sum(items), sum(tokens) FROM requests WHERE ts >= ? AND ts <= ?"
                f"{where} GROUP BY outcome",
                [raw_start, end, *args],
            ):
                counts[outcome] = counts.get(outcome, 0) + n
                items += it or 0
                tokens += tk or 0
            latencies = [
                r[0]
                for r in db.execute(
                    "SELECT latency_ms FROM requests WHERE ts >= ? AND ts <= ? "
                    f"AND outcome NOT IN ('rejected', 'client_error'){where}",
                    [raw_start, end, *args],
                )
            ]
            hist: list[int] = []
            lo = hi = None
            if floor > start:
                summed = [*OUTCOME_COLUMNS.values(), "items", "tokens"]
                row = db.execute(
                    "SELECT min(lat_min), max(lat_max), "
                    + ", ".join(f"coalesce(sum({c}), 0)" for c in [*summed, *H_COLS])
                    + f" FROM request_rollups WHERE minute > ? AND minute < ?{where}",
                    [start - MINUTE, floor, *args],
                ).fetchone()
                lo, hi, *sums = row
                for outcome, v in zip(OUTCOME_COLUMNS, sums, strict=False):
                    if v:
                        counts[outcome] = counts.get(outcome, 0) + v
                items += sums[len(OUTCOME_COLUMNS)]
                tokens += sums[len(OUTCOME_COLUMNS) + 1]
                hist = list(sums[len(summed) :])
        return {
            "counts": counts,
            "items": items,
            "tokens": tokens,
            "latencies": latencies,
            "hist": hist,
            "lat_min": lo,
            "lat_max": hi,
        }

    def request_buckets(self, start: float, step: float, n: int, model: str | None) -> dict[str, Any]:
        """Per bucket: ok count per model; all requests, server failures (`types.SERVER_FAILURES`) and client
        errors; latencies (raw) or histograms (rollups)."""
        end = start + step * n
        where, args = _filters(model, None)
        ok: dict[str, list[int]] = defaultdict(lambda: [0] * n)
        requests, failed, client = [0] * n, [0] * n, [0] * n
        lat_raw: list[list[float]] = [[] for _ in range(n)]
        hists: list[list[int]] = [[0] * N_BUCKETS for _ in range(n)]
        bounds: list[list[float | None]] = [[None, None] for _ in range(n)]
        with self._lock:
            if step < MINUTE:
                rows = self._db.execute(
                    f"SELECT ts, model, outcome, latency_ms FROM requests WHERE ts >= ? AND ts < ?{where}",
                    [start, end, *args],
                ).fetchall()
            else:
                rows = self._db.execute(
                    f"SELECT minute, model, n, ok, {' + '.join(_FAILED_COLS)}, client_errors, lat_min, lat_max, "
                    f"{', '.join(H_COLS)} FROM request_rollups WHERE minute >= ? AND minute < ?{where}",
                    [start, end, *args],
                ).fetchall()
        if step < MINUTE:
            for ts, m, outcome, lat in rows:
                i = int((ts - start) // step)
                requests[i] += 1
                if outcome == "ok":
                    ok[m][i] += 1
                elif outcome in SERVER_FAILURES:
                    failed[i] += 1
                elif outcome == "client_error":
                    client[i] += 1
                if outcome not in _INSTANT:
                    lat_raw[i].append(lat)
        else:
            for minute, m, n_all, n_ok, n_failed, n_client, lo, hi, *h in rows:
                i = int((minute - start) // step)
                requests[i] += n_all
                ok[m][i] += n_ok
                failed[i] += n_failed
                client[i] += n_client
                hb = hists[i]
                for j, c in enumerate(h):
                    hb[j] += c
                b = bounds[i]
                if lo is not None:
                    b[0] = lo if b[0] is None else min(b[0], lo)
                if hi is not None:
                    b[1] = hi if b[1] is None else max(b[1], hi)
        return {
            "ok": dict(ok),
            "requests": requests,
            "failed": failed,
            "client_errors": client,
            "latencies": lat_raw,
            "hists": hists,
            "bounds": bounds,
        }

    def resource_buckets(self, start: float, step: float, n: int) -> dict[str, dict[str, list[float | None]]]:
        """name -> key -> per-bucket mean (or peak, for PEAK_SERIES); None where nothing was sampled."""
        end = start + step * n
        with self._lock:
            if step < MINUTE:
                rows = self._db.execute(
                    "SELECT ts, name, key, 1, value, value FROM resources WHERE ts >= ? AND ts < ?",
                    (start, end),
                ).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT minute, name, key, n, total, maxv FROM resource_rollups "
                    "WHERE minute >= ? AND minute < ?",
                    (start, end),
                ).fetchall()
        acc: dict[tuple[str, str], list[list[float]]] = {}
        for ts, name, key, cnt, total, peak in rows:
            cells = acc.get((name, key))
            if cells is None:
                cells = acc[(name, key)] = [[0, 0.0, -math.inf] for _ in range(n)]
            c = cells[int((ts - start) // step)]
            c[0] += cnt
            c[1] += total
            c[2] = max(c[2], peak)
        out: dict[str, dict[str, list[float | None]]] = defaultdict(dict)
        for (name, key), cells in acc.items():
            peak_series = name in PEAK_SERIES
            out[name][key] = [None if c[0] == 0 else (c[2] if peak_series else c[1] / c[0]) for c in cells]
        return dict(out)


# Outcomes answered at once, kept out of latency figures (they would flatter them).
_INSTANT = frozenset({"rejected", "client_error"})
_FAILED_COLS = sorted(OUTCOME_COLUMNS[o] for o in SERVER_FAILURES)


def _rollup_requests(rows: Iterable[RequestRow]) -> list[list[Any]]:
    groups: dict[tuple[int, str, str], list[Any]] = {}
    n_at, items_at, tokens_at, lat_at, h_at = (_AT[c] for c in ("n", "items", "tokens", "lat_sum", H_COLS[0]))
    for ts, model, task, outcome, lat, items, tokens in rows:
        key = (int(ts // MINUTE) * MINUTE, model, task)
        g = groups.get(key)
        if g is None:
            g = groups[key] = [*key, *([0] * len(_COUNTS)), 0.0, None, None] + [0] * N_BUCKETS
        g[n_at] += 1
        # an outcome this version does not know is counted as an error, never dropped
        g[_OUTCOME_AT.get(outcome, _OUTCOME_AT["error"])] += 1
        g[items_at] += items
        g[tokens_at] += tokens
        if outcome not in _INSTANT:
            g[lat_at] += lat
            g[lat_at + 1] = lat if g[lat_at + 1] is None else min(g[lat_at + 1], lat)
            g[lat_at + 2] = lat if g[lat_at + 2] is None else max(g[lat_at + 2], lat)
            g[h_at + bucket_index(lat)] += 1
    return list(groups.values())


def _rollup_resources(rows: Iterable[ResourceRow]) -> list[list[Any]]:
    groups: dict[tuple[int, str, str], list[Any]] = {}
    for ts, name, key, value in rows:
        k = (int(ts // MINUTE) * MINUTE, name, key)
        g = groups.get(k)
        if g is None:
            groups[k] = [*k, 1, value, value]
        else:
            g[3] += 1
            g[4] += value
            g[5] = max(g[5], value)
    return list(groups.values())
