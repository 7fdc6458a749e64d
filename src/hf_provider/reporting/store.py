"""Error groups in SQLite (`HFP_HOME/servers/<host>-<port>/errors.db`): one row per fingerprint with its count,
first and last seen, and the last `MAX_SAMPLES` redacted samples. At most `max_groups` groups: a report of a
new fingerprint past that folds into the one overflow group of its error class (`overflow:<error class>`), so
the file stays bounded whatever the errors; groups already stored keep counting.

One connection guarded by one lock, short transactions: writes come in batches from the reporter's writer
thread (never from the event loop or a stage thread), reads from admin requests. WAL, so a reader never waits for
a writer's fsync. sqlite3 from the standard library: one small table pair needs no ORM.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from hf_provider.dbfile import Store
from hf_provider.reporting.reports import Report

SCHEMA_VERSION = 2
MAX_SAMPLES = 5
MAX_GROUPS = 1000  # the default of `[reporting] max_groups`
OVERFLOW = "overflow:"  # fingerprint prefix of the overflow groups; they do not count towards max_groups

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS error_groups (
    fingerprint TEXT PRIMARY KEY, error_class TEXT NOT NULL, exc_type TEXT NOT NULL, model TEXT NOT NULL,
    revision TEXT, phase TEXT NOT NULL, message TEXT NOT NULL, count INTEGER NOT NULL,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL, pipeline TEXT, step TEXT);
CREATE INDEX IF NOT EXISTS error_groups_last ON error_groups (last_seen);
CREATE TABLE IF NOT EXISTS error_samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT, fingerprint TEXT NOT NULL, ts REAL NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS error_samples_fp ON error_samples (fingerprint, id);
"""

# Schema 2: the pipeline and step of a failed pipeline step (NULL for a plain request), in its fingerprint.
_UPGRADE_1 = (
    "ALTER TABLE error_groups ADD COLUMN pipeline TEXT",
    "ALTER TABLE error_groups ADD COLUMN step TEXT",
)

_UPSERT = (
    "INSERT INTO error_groups (fingerprint, error_class, exc_type, model, revision, phase, message, count, "
    "first_seen, last_seen, pipeline, step) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (fingerprint) DO UPDATE SET "
    "count = count + excluded.count, first_seen = min(first_seen, excluded.first_seen), "
    "last_seen = max(last_seen, excluded.last_seen), "
    "revision = CASE WHEN excluded.last_seen >= last_seen THEN excluded.revision ELSE revision END, "
    "message = CASE WHEN excluded.last_seen >= last_seen THEN excluded.message ELSE message END"
)


class ErrorStore(Store):
    SCHEMA, VERSION, STEPS = _SCHEMA, SCHEMA_VERSION, {1: _UPGRADE_1}

    # -- writes --

    def write(self, reports: Iterable[Report], *, max_groups: int = MAX_GROUPS) -> dict[str, int]:
        """Add reports: one upsert per group, its newest samples appended, older ones beyond MAX_SAMPLES cut.
        Returns the reports folded into overflow groups, per error class (empty when none were)."""
        if max_groups < 1:
            raise ValueError(f"[reporting] max_groups must be at least 1, got {max_groups}")
        groups: dict[str, list[Any]] = {}
        by_group: dict[str, list[Report]] = {}
        for r in reports:
            g = groups.get(r.fingerprint)
            last = r.ts if r.last_ts is None else r.last_ts
            if g is None:
                groups[r.fingerprint] = [
                    r.fingerprint, r.error_class, r.exc_type, r.model, r.revision, r.phase, r.message,
                    1 + r.repeats, r.ts, last, r.pipeline, r.step,
                ]  # fmt: skip
            else:
                _merge(g, 1 + r.repeats, r.ts, last, r.revision, r.message)
            by_group.setdefault(r.fingerprint, []).append(r)
        if not groups:
            return {}
        samples = {  # (ts, data) of the newest few of each group, serialised before taking the lock
            fp: [(r.ts, json.dumps(r.sample(), default=str)) for r in rs[-MAX_SAMPLES:]]
            for fp, rs in by_group.items()
        }
        with self._lock:
            db = self._db
            # IMMEDIATE: the write lock from the start, so counting the groups and adding new ones is one step
            # even with another process on the file (a deferred one could count, then lose the race).
            db.execute("BEGIN IMMEDIATE")
            try:
                folded = _bound(db, groups, samples, max_groups)
                db.executemany(_UPSERT, list(groups.values()))
                db.executemany(
                    "INSERT INTO error_samples (fingerprint, ts, data) VALUES (?, ?, ?)",
                    [(fp, ts, data) for fp, rows in samples.items() for ts, data in rows],
                )
                for fp in groups:
                    db.execute(
                        "DELETE FROM error_samples WHERE fingerprint = ? AND id NOT IN "
                        "(SELECT id FROM error_samples WHERE fingerprint = ? ORDER BY id DESC LIMIT ?)",
                        (fp, fp, MAX_SAMPLES),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return folded

    def expire(self, before: float) -> int:
        """Retention: drop groups last seen before `before`, with their samples. Returns the groups dropped."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                n = db.execute("DELETE FROM error_groups WHERE last_seen < ?", (before,)).rowcount
                db.execute(
                    "DELETE FROM error_samples WHERE fingerprint NOT IN (SELECT fingerprint FROM error_groups)"
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return n

    # -- reads --

    def groups(
        self,
        *,
        model: str | None = None,
        since: float | None = None,
        error_class: str | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        """Groups, most recently seen first, each with its samples (newest first)."""
        where, args = ["1 = 1"], []
        for col, value in (("model", model), ("error_class", error_class)):
            if value is not None:
                where.append(f"{col} = ?")
                args.append(value)
        if since is not None:
            where.append("last_seen >= ?")
            args.append(since)
        cols = (
            "fingerprint, error_class, exc_type, model, revision, phase, message, count, first_seen, last_seen, "
            "pipeline, step"
        )
        with self._lock:
            rows = self._db.execute(
                f"SELECT {cols} FROM error_groups WHERE {' AND '.join(where)} "
                "ORDER BY last_seen DESC LIMIT ?",
                [*args, limit],
            ).fetchall()
            out = []
            for row in rows:
                g = dict(zip(cols.split(", "), row, strict=True))
                g["samples"] = [
                    json.loads(d)
                    for (d,) in self._db.execute(
                        "SELECT data FROM error_samples WHERE fingerprint = ? ORDER BY id DESC", (row[0],)
                    )
                ]
                out.append(g)
        return out


def _merge(g: list[Any], count: int, first: float, last: float, revision: str | None, message: str) -> None:
    """Count occurrences into a pending group row; the newest one's revision and message are shown."""
    g[7] += count
    g[8] = min(g[8], first)
    if last >= g[9]:
        g[4], g[6], g[9] = revision, message, last


def _bound(
    db: sqlite3.Connection,
    groups: dict[str, list[Any]],
    samples: dict[str, list[tuple[float, str]]],
    max_groups: int,
) -> dict[str, int]:
    """Fold the new groups of a batch that do not fit under `max_groups` into their class's overflow group (in
    place, first come first kept); the reports folded, per error class."""
    (stored,) = db.execute(
        "SELECT count(*) FROM error_groups WHERE substr(fingerprint, 1, ?) != ?", (len(OVERFLOW), OVERFLOW)
    ).fetchone()
    new = [fp for fp in groups if not fp.startswith(OVERFLOW)]
    if stored + len(new) <= max_groups:  # the usual case: no lookups
        return {}
    folded: dict[str, int] = {}
    for fp in new:
        if db.execute("SELECT 1 FROM error_groups WHERE fingerprint = ?", (fp,)).fetchone() is not None:
            continue
        if stored < max_groups:
            stored += 1
            continue
        g = groups.pop(fp)
        error_class, count = g[1], g[7]
        folded[error_class] = folded.get(error_class, 0) + count
        key = OVERFLOW + error_class
        message = f"new error groups past [reporting] max_groups = {max_groups} are counted here"
        if key in groups:
            _merge(groups[key], count, g[8], g[9], None, message)
        else:
            groups[key] = [key, error_class, "-", "-", None, "-", message, count, g[8], g[9], None, None]
        merged = samples.get(key, []) + samples.pop(fp)
        samples[key] = sorted(merged, key=lambda row: row[0])[-MAX_SAMPLES:]
    return folded
