"""Error groups in SQLite (`HFP_HOME/servers/<host>-<port>/errors.db`): one row per fingerprint with its count,
first and last seen, and the last `MAX_SAMPLES` redacted samples.

One connection guarded by one lock, short transactions: writes come in batches from the reporter's writer
thread (never from the event loop or a stage thread), reads from admin requests. WAL, so a reader never waits for
a writer's fsync. sqlite3 from the standard library: one small table pair needs no ORM.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from hf_provider.dbfile import Store
from hf_provider.reporting.reports import Report

SCHEMA_VERSION = 1
MAX_SAMPLES = 5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS error_groups (
    fingerprint TEXT PRIMARY KEY, error_class TEXT NOT NULL, exc_type TEXT NOT NULL, model TEXT NOT NULL,
    revision TEXT, phase TEXT NOT NULL, message TEXT NOT NULL, count INTEGER NOT NULL,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL);
CREATE INDEX IF NOT EXISTS error_groups_last ON error_groups (last_seen);
CREATE TABLE IF NOT EXISTS error_samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT, fingerprint TEXT NOT NULL, ts REAL NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS error_samples_fp ON error_samples (fingerprint, id);
"""

_UPSERT = (
    "INSERT INTO error_groups (fingerprint, error_class, exc_type, model, revision, phase, message, count, "
    "first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET "
    "count = count + excluded.count, first_seen = min(first_seen, excluded.first_seen), "
    "last_seen = max(last_seen, excluded.last_seen), "
    "revision = CASE WHEN excluded.last_seen >= last_seen THEN excluded.revision ELSE revision END, "
    "message = CASE WHEN excluded.last_seen >= last_seen THEN excluded.message ELSE message END"
)


class ErrorStore(Store):
    SCHEMA, VERSION = _SCHEMA, SCHEMA_VERSION

    # -- writes --

    def write(self, reports: Iterable[Report]) -> None:
        """Add reports: one upsert per group, its newest samples appended, older ones beyond MAX_SAMPLES cut."""
        groups: dict[str, list[Any]] = {}
        samples: dict[str, list[Report]] = {}
        for r in reports:
            g = groups.get(r.fingerprint)
            last = r.ts if r.last_ts is None else r.last_ts
            if g is None:
                groups[r.fingerprint] = [
                    r.fingerprint, r.error_class, r.exc_type, r.model, r.revision, r.phase, r.message,
                    1 + r.repeats, r.ts, last,
                ]  # fmt: skip
            else:
                g[7] += 1 + r.repeats
                g[8] = min(g[8], r.ts)
                if last >= g[9]:
                    g[4], g[6], g[9] = r.revision, r.message, last
            samples.setdefault(r.fingerprint, []).append(r)
        if not groups:
            return
        rows = [
            (fp, r.ts, json.dumps(r.sample(), default=str))
            for fp, rs in samples.items()
            for r in rs[-MAX_SAMPLES:]
        ]
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                db.executemany(_UPSERT, list(groups.values()))
                db.executemany("INSERT INTO error_samples (fingerprint, ts, data) VALUES (?, ?, ?)", rows)
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
        cols = "fingerprint, error_class, exc_type, model, revision, phase, message, count, first_seen, last_seen"
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
