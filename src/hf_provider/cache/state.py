"""What hf-provider remembers about the HF cache: when each revision was last used, and file digests.

Kept in SQLite in huggingface_hub's assets folder for downstream libraries (`cached_assets_path`, by default
`$HF_HOME/assets/hf-provider/`), one database per cache folder, so several servers on one cache share it and the
cache folder itself holds nothing `hf cache` does not know.

- `access`: the provider's own record of use, one row per (repo, commit), updated at every load. The disk budget
  removes the least recently used revision first by this record, since atime is unreliable (noatime, relatime,
  and a hash check that reads every byte would count as use).
- `verdicts`: a file's digest keyed by its (inode, size, mtime_ns) at hashing time, so a warm restart, whose files
  have not changed, hashes nothing; any later write to a file changes its mtime and invalidates the record. As in
  git's "racily clean" rule, a digest recorded less than RACY_NS after the file's mtime is not trusted: a write in
  the same timestamp tick (the kernel's coarse clock; 1-2 s on FAT, ext3, HFS+) would leave the mtime as it was.
  Such a file (one hashed right after its download, so a small one) is hashed once more at its next check.
- `holds`: the revisions each running process has loaded, swapping or warm (cache/pins.py publishes them), so a
  prune in another process (`hfp cache prune`, another server on the same cache) never removes them. A row counts
  while its process lives: (pid, start time) tells a live holder from a dead one whose pid was reused.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from hf_provider.dbfile import Store

SCHEMA_VERSION = 1
RACY_NS = 2_000_000_000  # a digest recorded within this of the file's mtime is checked again (see above)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS access (
    repo_id TEXT NOT NULL, commit_hash TEXT NOT NULL, last_used REAL NOT NULL, uses INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, commit_hash));
CREATE TABLE IF NOT EXISTS verdicts (
    path TEXT NOT NULL, algorithm TEXT NOT NULL, inode INTEGER NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, recorded_ns INTEGER NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (path, algorithm));
CREATE TABLE IF NOT EXISTS holds (
    repo_id TEXT NOT NULL, commit_hash TEXT NOT NULL, pid INTEGER NOT NULL, started REAL NOT NULL,
    reasons TEXT NOT NULL, PRIMARY KEY (repo_id, commit_hash, pid))
"""


def state_dir(cache_dir: Path) -> Path:
    """This cache's folder under huggingface_hub's assets cache (`HF_ASSETS_CACHE`, else `<HF_HOME>/assets`)."""
    from huggingface_hub import cached_assets_path

    assets = os.environ.get("HF_ASSETS_CACHE") or str(Path(cache_dir).parent / "assets")
    key = hashlib.sha1(str(Path(cache_dir).resolve()).encode()).hexdigest()[:16]
    return cached_assets_path(
        library_name="hf-provider", namespace="hub-cache", subfolder=key, assets_dir=assets
    )


class CacheState(Store):
    SCHEMA, VERSION = _SCHEMA, SCHEMA_VERSION

    def __init__(self, path: Path | None, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(path)
        self.clock = clock

    # ---- access records ------------------------------------------------------------------------------------
    def touch(self, repo_id: str, commit: str, when: float | None = None) -> None:
        t = self.clock() if when is None else when
        with self._lock:
            self._db.execute(
                "INSERT INTO access (repo_id, commit_hash, last_used, uses) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (repo_id, commit_hash) DO UPDATE SET last_used = max(last_used, excluded.last_used), "
                "uses = uses + 1",
                (repo_id, commit, t),
            )

    def last_used(self) -> dict[tuple[str, str], float]:
        with self._lock:
            rows = self._db.execute("SELECT repo_id, commit_hash, last_used FROM access").fetchall()
        return {(r, c): t for r, c, t in rows}

    def forget(self, repo_id: str, commit: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM access WHERE repo_id = ? AND commit_hash = ?", (repo_id, commit))

    # ---- holds ----------------------------------------------------------------------------------------------
    def publish_holds(self, pid: int, started: float, held: Mapping[tuple[str, str], Iterable[str]]) -> None:
        """Replace what process `pid` (started at `started`, epoch seconds) holds with `held`."""
        rows = [(r, c, pid, started, ",".join(sorted(why))) for (r, c), why in held.items()]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM holds WHERE pid = ?", (pid,))
                self._db.executemany("INSERT OR REPLACE INTO holds VALUES (?, ?, ?, ?, ?)", rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def held_elsewhere(self, pid: int) -> dict[tuple[str, str], set[str]]:
        """(repo, commit) -> reasons held by live processes other than `pid`; rows of dead ones are removed."""
        with self._lock:
            rows = self._db.execute(
                "SELECT repo_id, commit_hash, pid, started, reasons FROM holds WHERE pid != ?", (pid,)
            ).fetchall()
        out: dict[tuple[str, str], set[str]] = {}
        dead: set[int] = set()
        for repo, commit, holder, started, why in rows:
            if holder in dead or not _alive(holder, started):
                dead.add(holder)
                continue
            out.setdefault((repo, commit), set()).update(w for w in why.split(",") if w)
        if dead:
            with self._lock:
                self._db.executemany("DELETE FROM holds WHERE pid = ?", [(d,) for d in dead])
        return out

    # ---- digests ---------------------------------------------------------------------------------------------
    def digest(self, path: Path, algorithm: str, st: os.stat_result) -> str | None:
        """The digest recorded for `path` if the file is still the one that was hashed (same inode, size, mtime)."""
        with self._lock:
            row = self._db.execute(
                "SELECT inode, size, mtime_ns, recorded_ns, digest FROM verdicts WHERE path = ? AND algorithm = ?",
                (str(path), algorithm),
            ).fetchone()
        if (
            row
            and (row[0], row[1], row[2]) == (st.st_ino, st.st_size, st.st_mtime_ns)
            and row[3] - row[2] > RACY_NS
        ):
            return row[4]
        return None

    def record_digest(self, path: Path, algorithm: str, st: os.stat_result, digest: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO verdicts (path, algorithm, inode, size, mtime_ns, recorded_ns, digest) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (str(path), algorithm, st.st_ino, st.st_size, st.st_mtime_ns, time.time_ns(), digest),
            )

    def drop_digests(self, path: Path) -> None:
        with self._lock:
            self._db.execute("DELETE FROM verdicts WHERE path = ?", (str(path),))


def _alive(pid: int, started: float) -> bool:
    """Whether process `pid` runs and is the one that started at `started` (not a later one given its pid)."""
    import psutil

    try:
        return abs(psutil.Process(pid).create_time() - started) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):  # AccessDenied: alive, someone else's: keep its rows
        return psutil.pid_exists(pid)


_states: dict[Path, CacheState] = {}
_states_lock = threading.Lock()


def state_for(cache_dir: Path) -> CacheState:
    """The process's one CacheState for `cache_dir` (opened on first use)."""
    key = Path(cache_dir).resolve()
    with _states_lock:
        s = _states.get(key)
        if s is None:
            s = _states[key] = CacheState(state_dir(key) / "state.sqlite")
        return s


__all__ = ["CacheState", "state_dir", "state_for"]
