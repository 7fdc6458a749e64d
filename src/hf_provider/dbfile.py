"""The project's SQLite files (metric history, error reports, version history, cache records): one way to open
them, to check their schema, and to guard them with a lock.

WAL so readers (the dashboard, `hfp errors`) never block the writer thread; synchronous=NORMAL because losing the
last second of history or reports in a power cut is acceptable, an fsync per batch is not. `path=None` keeps the
database in memory (the Python API without a home)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar


def open_db(path: Path | None) -> sqlite3.Connection:
    if path is None:
        return sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def migrate(
    db: sqlite3.Connection,
    schema: str,
    version: int,
    path: Path | None,
    steps: Mapping[int, Sequence[str]] | None = None,
) -> None:
    """Create the tables of `schema` (which has a `schema_version` table) and record `version`; bring a file of
    an older version up by running `steps[v]` for each version v it is behind (v to v + 1), in order, in the same
    transaction, so a failed upgrade leaves the file as it was; refuse a file written by a newer hf-provider
    instead of misreading it.

    `schema` runs first on every open, so its statements must be `IF NOT EXISTS` and must not name a column a
    step adds (on an old file its tables keep their old shape until the steps run)."""
    steps = steps or {}
    db.execute("BEGIN IMMEDIATE")
    try:
        for stmt in filter(None, (s.strip() for s in schema.split(";"))):
            db.execute(stmt)
        row = db.execute("SELECT max(version) FROM schema_version").fetchone()
        found = row[0] if row else None
        if found is None:
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        elif found > version:
            raise RuntimeError(
                f"{path} was written by a newer hf-provider (schema {found} > {version}); "
                "upgrade hf-provider or point HFP_HOME elsewhere."
            )
        elif found < version:
            for v in range(found, version):
                if v not in steps:  # a version bump without its upgrade would misread the old file
                    raise RuntimeError(f"{path}: no upgrade from schema {v} to {v + 1}")
                for stmt in steps[v]:
                    db.execute(stmt)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class Store:
    """A SQLite file shared by threads under one lock, created, upgraded or checked against the subclass's schema."""

    SCHEMA: ClassVar[str]
    VERSION: ClassVar[int]
    # from_version -> the statements that bring a file of that version to the next one (see `migrate`)
    STEPS: ClassVar[Mapping[int, Sequence[str]]] = {}

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_db(path)
        with self._lock:
            migrate(self._db, self.SCHEMA, self.VERSION, path, self.STEPS)

    def close(self) -> None:
        with self._lock:
            self._db.close()
