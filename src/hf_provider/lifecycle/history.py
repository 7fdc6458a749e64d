"""Version history: every load, swap, rollback and canary step of every model, in SQLite under the server's home
(`HFP_HOME/servers/<host>-<port>/versions.db`; in memory for the Python API without a home).

Rows are appended (never updated), one per event: when, model, action, the revision as asked, the exact commit,
what started it (`actor`), the outcome and, for a failure, its masked message. Events are rare (loads and
operator actions), so a write is one short transaction on the caller's thread.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hf_provider.dbfile import Store
from hf_provider.reporting.redact import mask

SCHEMA_VERSION = 1
ACTIONS = ("load", "swap", "rollback", "canary", "promote", "abort")
# Actions after which the recorded commit is the one serving: where a rollback may go back to.
SERVING = ("load", "swap", "rollback", "promote")
COLUMNS = ("id", "ts", "model", "action", "revision", "commit", "actor", "outcome", "detail")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, model TEXT NOT NULL, action TEXT NOT NULL,
    revision TEXT, commit_sha TEXT, actor TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT);
CREATE INDEX IF NOT EXISTS events_model ON events (model, id);
"""
_SELECT = "SELECT id, ts, model, action, revision, commit_sha, actor, outcome, detail FROM events"

# Who started what happens on this thread or task: "request" (a load on demand) unless a caller says otherwise
# ("start" for the loads at server start, "admin" for the admin API, "python" for the Provider's methods).
ACTOR: contextvars.ContextVar[str] = contextvars.ContextVar("hfp_lifecycle_actor", default="request")


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    token = ACTOR.set(actor)
    try:
        yield
    finally:
        ACTOR.reset(token)


class VersionHistory(Store):
    """The version events of every model (versions.db); observability/store.py's RequestHistoryStore holds the
    requests and resource samples."""

    SCHEMA, VERSION = _SCHEMA, SCHEMA_VERSION

    def __init__(self, path: Path | None, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(path)
        self.clock = clock

    def record(
        self,
        model: str,
        action: str,
        *,
        revision: str | None,
        commit: str | None,
        outcome: str = "ok",
        actor: str | None = None,
        detail: str | None = None,
    ) -> int:
        """Append one event; returns its id. `detail` (an error message) is masked before it is stored."""
        if action not in ACTIONS:
            raise ValueError(f"unknown history action {action!r}; one of {', '.join(ACTIONS)}")
        row = (
            self.clock(),
            model,
            action,
            revision,
            commit,
            actor or ACTOR.get(),
            outcome,
            None if detail is None else mask(detail)[:500],
        )
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO events (ts, model, action, revision, commit_sha, actor, outcome, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return int(cur.lastrowid or 0)

    def events(self, model: str | None = None, *, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first."""
        where, args = ("WHERE model = ?", [model]) if model is not None else ("", [])
        with self._lock:
            rows = self._db.execute(f"{_SELECT} {where} ORDER BY id DESC LIMIT ?", [*args, limit]).fetchall()
        return [dict(zip(COLUMNS, r, strict=True)) for r in rows]

    def previous(self, model: str, current: str | None) -> dict[str, Any] | None:
        """The newest event after which `model` served a commit other than `current`: where a rollback goes.
        Rolling back twice returns to where it started."""
        marks = ", ".join("?" * len(SERVING))
        with self._lock:
            row = self._db.execute(
                f"{_SELECT} WHERE model = ? AND outcome = 'ok' AND action IN ({marks}) AND commit_sha IS NOT NULL "
                "AND commit_sha IS NOT ? ORDER BY id DESC LIMIT 1",
                [model, *SERVING, current],
            ).fetchone()
        return None if row is None else dict(zip(COLUMNS, row, strict=True))


def serving_events(history: Any) -> Callable[[str], list[tuple[float, str | None]]]:
    """(ts, commit) of each serving event of a model, oldest first, from lifecycle/history.py's store."""

    def read(model: str) -> list[tuple[float, str | None]]:
        rows = history.events(model, limit=200)
        return sorted((r["ts"], r["commit"]) for r in rows if r["action"] in SERVING and r["outcome"] == "ok")

    return read
