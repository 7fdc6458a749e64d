"""The project's SQLite files (metric history, error reports, version history, cache records): one way to open
them, to check their schema, and to guard them with a lock.

WAL so readers (the dashboard, `hfp errors`) never block the writer thread; synchronous=NORMAL because losing the
last second of history or reports in a power cut is acceptable, an fsync per batch is not. `path=None` keeps the
database in memory (the Python API without a home)."""

from __future__ import annotations

import sqlite3
import threading
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


def migrate(db: sqlite3.Connection, schema: str, version: int, path: Path | None) -> None:
    """Create the tables of `schema` (which has a `schema_version` table) and record `version`; refuse a file
    written by a newer hf-provider instead of misreading it."""
    db.execute("BEGIN IMMEDIATE")
    for stmt in filter(None, (s.strip() for s in schema.split(";"))):
        db.execute(stmt)
    row = db.execute("SELECT max(version) FROM schema_version").fetchone()
    found = row[0] if row else None
    if found is None:
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    elif found > version:
        db.execute("ROLLBACK")
        raise RuntimeError(
            f"{path} was written by a newer hf-provider (schema {found} > {version}); "
            "upgrade hf-provider or point HFP_HOME elsewhere."
        )
    db.execute("COMMIT")


class Store:
    """A SQLite file shared by threads under one lock, created or checked against the subclass's schema."""

    SCHEMA: ClassVar[str]
    VERSION: ClassVar[int]

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_db(path)
        with self._lock:
            migrate(self._db, self.SCHEMA, self.VERSION, path)

    def close(self) -> None:
        with self._lock:
            self._db.close()
