"""Metric history in SQLite (`HFP_HOME/servers/<host>-<port>/metrics.db`, one per server): raw samples, one-minute
rollups, retention.

Only counts and timings are stored, never inputs or outputs. Every write also folds into the one-minute
rollup of its minute ("live" rollups), so charts over hours or days read at most one row per minute and model,
and retention only has to delete: raw rows older than the raw retention go (their minutes stay as rollups),
rollups older than the rollup retention go. `raw_floor` (in `meta`) records where raw rows stop being
complete; stats read raw rows from there on and rollups before it, so nothing is counted twice.

One connection guarded by one lock: writes come from the writer thread in batches, reads from admin requests.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from hf_provider.dbfile import Store
from hf_provider.observability.quantiles import N_BUCKETS, bucket_index

SCHEMA_VERSION = 1
MINUTE = 60
H_COLS = [f"h{i}" for i in range(N_BUCKETS)]

RequestRow = tuple[
    float, str, str, str, float, int, int
]  # ts, model, task, outcome, latency_ms, items, tokens
ResourceRow = tuple[float, str, str, float]  # ts, name, key (model / gpu index / ""), value

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
    "INSERT INTO request_rollups (minute, model, task, n, ok, errors, rejected, items, tokens, lat_sum, "
    f"lat_min, lat_max, {', '.join(H_COLS)}) VALUES ({', '.join('?' * (12 + N_BUCKETS))}) "
    "ON CONFLICT (minute, model, task) DO UPDATE SET n = n + excluded.n, ok = ok + excluded.ok, "
    "errors = errors + excluded.errors, rejected = rejected + excluded.rejected, "
    "items = items + excluded.items, tokens = tokens + excluded.tokens, "
    "lat_sum = lat_sum + excluded.lat_sum, "
    "lat_min = min(coalesce(lat_min, excluded.lat_min), coalesce(excluded.lat_min, lat_min)), "
    "lat_max = max(coalesce(lat_max, excluded.lat_max), coalesce(excluded.lat_max, lat_max)), "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in H_COLS)
)
_RES_UPSERT = (
    "INSERT INTO resource_rollups (minute, name, key, n, total, maxv) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (minute, name, key) DO UPDATE SET n = n + excluded.n, total = total + excluded.total, "
    "maxv = max(maxv, excluded.maxv)"
)

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

    SCHEMA, VERSION = _SCHEMA, SCHEMA_VERSION

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
                row = db.execute(
                    "SELECT coalesce(sum(ok), 0), coalesce(sum(errors), 0), coalesce(sum(rejected), 0), "
                    "coalesce(sum(items), 0), coalesce(sum(tokens), 0), min(lat_min), max(lat_max), "
                    + ", ".join(f"coalesce(sum({c}), 0)" for c in H_COLS)
                    + f" FROM request_rollups WHERE minute > ? AND minute < ?{where}",
                    [start - MINUTE, floor, *args],
                ).fetchone()
                counts["ok"] += row[0]
                counts["error"] += row[1]
                counts["rejected"] += row[2]
                items += row[3]
                tokens += row[4]
                lo, hi = row[5], row[6]
                hist = list(row[7:])
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
        """Per bucket: ok count per model, failed count, latencies (raw) or histograms (rollups)."""
        end = start + step * n
        where, args = _filters(model, None)
        ok: dict[str, list[int]] = defaultdict(lambda: [0] * n)
        errors = [0] * n
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
                    f"SELECT minute, model, ok, errors + rejected, lat_min, lat_max, {', '.join(H_COLS)} "
                    f"FROM request_rollups WHERE minute >= ? AND minute < ?{where}",
                    [start, end, *args],
                ).fetchall()
        if step < MINUTE:
            for ts, m, outcome, lat in rows:
                i = int((ts - start) // step)
                if outcome == "ok":
                    ok[m][i] += 1
                else:
                    errors[i] += 1
                if outcome not in _INSTANT:
                    lat_raw[i].append(lat)
        else:
            for minute, m, n_ok, n_err, lo, hi, *h in rows:
                i = int((minute - start) // step)
                ok[m][i] += n_ok
                errors[i] += n_err
                hb = hists[i]
                for j, c in enumerate(h):
                    hb[j] += c
                b = bounds[i]
                if lo is not None:
                    b[0] = lo if b[0] is None else min(b[0], lo)
                if hi is not None:
                    b[1] = hi if b[1] is None else max(b[1], hi)
        return {"ok": dict(ok), "errors": errors, "latencies": lat_raw, "hists": hists, "bounds": bounds}

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


# Outcomes answered at once, kept out of latency figures (they would flatter them). Rollups keep ok, rejected and
# everything else as errors (client errors, failures, cancellations, time-outs): the error rate stays exact.
_INSTANT = frozenset({"rejected", "client_error"})


def _rollup_requests(rows: Iterable[RequestRow]) -> list[list[Any]]:
    groups: dict[tuple[int, str, str], list[Any]] = {}
    for ts, model, task, outcome, lat, items, tokens in rows:
        key = (int(ts // MINUTE) * MINUTE, model, task)
        g = groups.get(key)
        if g is None:
            g = groups[key] = [*key, 0, 0, 0, 0, 0, 0, 0.0, None, None] + [0] * N_BUCKETS
        g[3] += 1
        if outcome == "ok":
            g[4] += 1
        elif outcome == "rejected":
            g[6] += 1
        else:
            g[5] += 1
        g[7] += items
        g[8] += tokens
        if outcome not in _INSTANT:
            g[9] += lat
            g[10] = lat if g[10] is None else min(g[10], lat)
            g[11] = lat if g[11] is None else max(g[11], lat)
            g[12 + bucket_index(lat)] += 1
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
