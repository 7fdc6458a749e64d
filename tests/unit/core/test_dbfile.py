"""dbfile.migrate: new files get the current version, old ones run their upgrade steps in order inside one
transaction, a failed or missing step leaves the file as it was, a newer file is refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import ClassVar

import pytest

from hf_provider.dbfile import Store

V1 = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS things (name TEXT NOT NULL)
"""


class V1Store(Store):
    SCHEMA, VERSION = V1, 1


class V3Store(Store):
    SCHEMA, VERSION = V1, 3
    STEPS: ClassVar[dict[int, list[str]]] = {
        1: ["ALTER TABLE things ADD COLUMN size INTEGER NOT NULL DEFAULT 0", "UPDATE things SET size = 1"],
        2: ["UPDATE things SET size = size * 10"],  # runs after step 1: order matters
    }


def _read(path: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _v1_file(path: Path) -> None:
    s = V1Store(path)
    s._db.execute("INSERT INTO things VALUES ('a')")
    s.close()


def test_a_new_file_gets_the_current_version_without_running_steps(tmp_path: Path) -> None:
    V3Store(tmp_path / "x.db").close()
    assert _read(tmp_path / "x.db", "SELECT version FROM schema_version") == [(3,)]
    # the schema alone made the table: steps are for files that have one already
    assert [c[1] for c in _read(tmp_path / "x.db", "PRAGMA table_info(things)")] == ["name"]


def test_an_old_file_runs_each_step_in_order_once(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    _v1_file(path)
    V3Store(path).close()
    assert _read(path, "SELECT name, size FROM things") == [("a", 10)]
    assert _read(path, "SELECT version FROM schema_version") == [(3,)]  # one row, the new version
    V3Store(path).close()  # reopening runs nothing again
    assert _read(path, "SELECT name, size FROM things") == [("a", 10)]


def test_a_failing_step_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    _v1_file(path)

    class Broken(Store):
        SCHEMA, VERSION = V1, 2
        STEPS: ClassVar[dict[int, list[str]]] = {
            1: ["ALTER TABLE things ADD COLUMN size INTEGER", "UPDATE nowhere SET x = 1"]
        }

    with pytest.raises(sqlite3.OperationalError, match="nowhere"):
        Broken(path)
    assert _read(path, "SELECT version FROM schema_version") == [(1,)]
    assert [c[1] for c in _read(path, "PRAGMA table_info(things)")] == ["name"]  # the ALTER rolled back too
    V1Store(path).close()  # still a good version-1 file


def test_a_version_bump_without_its_step_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    _v1_file(path)

    class Skipping(Store):
        SCHEMA, VERSION = V1, 3
        STEPS: ClassVar[dict[int, list[str]]] = {1: []}  # an empty step is declared; 2 -> 3 is missing

    with pytest.raises(RuntimeError, match="no upgrade from schema 2 to 3"):
        Skipping(path)
    assert _read(path, "SELECT version FROM schema_version") == [(1,)]


def test_a_newer_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    V3Store(path).close()
    with pytest.raises(RuntimeError, match=r"newer hf-provider \(schema 3 > 1\)"):
        V1Store(path)
    assert _read(path, "SELECT version FROM schema_version") == [(3,)]
