"""`hfp.lock`: the exact Hub commit and file hashes of every configured model, written beside `hfp.toml`.

The format is TOML, one `[[model]]` table per model, sorted by name, files sorted by path, so that the same set of
entries always gives the same bytes (a lock diffs cleanly and two machines can compare theirs with `cmp`):

    version = 1

    [[model]]
    name = "t5"
    source = "google-t5/t5-small"
    revision = "main"                 # as asked in the config
    commit = "df1b051c49625cf57a3d0d8d3863ed4d13564fe4"
    code_revision = "..."             # only for trust_remote_code models
    optimized = { variant = "onnx", task = "embeddings", hardware = "...", versions = "..." }  # `hfp optimize`
    files = [
      { path = "config.json", size = 1206, sha256 = "..." },
    ]

The API here (`LockEntry`, `read_lock`, `write_lock`, `update_entry`) is what swap / rollback call on a `--locked`
server to rewrite one model's entry, so a restart serves what was last swapped in. Writes are atomic (unique temp
file, then os.replace: a reader sees the old lock or the new one, never half of one); `update_entry` holds a file
lock (`hfp.lock.lock`) across its read-modify-write so two writers cannot lose each other's entry.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_provider.errors import ConfigError

LOCK_NAME = "hfp.lock"
LOCK_VERSION = 1
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, order=True)
class LockedFile:
    path: str  # relative to the snapshot folder, forward slashes
    size: int
    sha256: str


@dataclass(frozen=True)
class LockEntry:
    name: str  # the model's configured name
    source: str  # Hub repo id
    revision: str  # the revision as asked (branch, tag or commit)
    commit: str  # the exact 40-hex commit it resolved to
    code_revision: str | None = None  # the commit remote code is pinned to (trust_remote_code models only)
    files: tuple[LockedFile, ...] = field(default=())
    # `hfp optimize`'s choice (optimize/): variant, task, and the hardware and library versions it was measured on;
    # () in locks written before it or for models never optimized
    optimized: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a lock entry needs a name")
        if not _HEX40.match(self.commit):
            raise ValueError(f"lock entry {self.name!r}: commit {self.commit!r} is not a 40-hex commit sha")
        if self.code_revision is not None and not _HEX40.match(self.code_revision):
            raise ValueError(
                f"lock entry {self.name!r}: code_revision {self.code_revision!r} is not a commit"
            )
        files = tuple(sorted(f if isinstance(f, LockedFile) else LockedFile(**f) for f in self.files))
        for f in files:
            if not _HEX64.match(f.sha256) or f.size < 0 or not f.path or f.path.startswith("/"):
                raise ValueError(f"lock entry {self.name!r}: bad file record {f}")
        object.__setattr__(self, "files", files)

    def file(self, path: str) -> LockedFile | None:
        return next((f for f in self.files if f.path == path), None)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "source": self.source,
            "revision": self.revision,
            "commit": self.commit,
        }
        if self.code_revision:
            d["code_revision"] = self.code_revision
        if self.optimized:
            d["optimized"] = dict(self.optimized)
        d["files"] = [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files]
        return d


def entry_from_snapshot(
    name: str,
    source: str,
    revision: str,
    commit: str,
    folder: str | os.PathLike[str],
    *,
    code_revision: str | None = None,
) -> LockEntry:
    """A lock entry for a downloaded snapshot: every file under `folder` with its size and sha256.

    Hashes go through the integrity verdict cache (cache/integrity.py), so a file already verified since its
    last change is not read again.
    """
    from hf_provider.cache.integrity import file_sha256

    root = Path(folder)
    files = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            if rel.startswith(".cache/") or rel.startswith(".git/"):
                continue
            files.append(LockedFile(rel, p.stat().st_size, file_sha256(p)))
    return LockEntry(name, source, revision, commit, code_revision, tuple(files))


def lock_path_for(config: str | os.PathLike[str] | None) -> Path:
    """The lock beside `config` (hfp.toml), or ./hfp.lock when no config file is used."""
    return Path(config).resolve().parent / LOCK_NAME if config else Path.cwd() / LOCK_NAME


def read_lock(path: str | os.PathLike[str]) -> dict[str, LockEntry]:
    """Entries by model name. A missing file is an empty lock; a malformed one raises ConfigError."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        data = tomllib.loads(raw.decode())
        version = data.get("version", LOCK_VERSION)
        if version != LOCK_VERSION:
            raise ValueError(f"version {version} (this hfp reads version {LOCK_VERSION})")
        entries: dict[str, LockEntry] = {}
        for m in data.get("model", []):
            entry = LockEntry(
                name=m["name"],
                source=m["source"],
                revision=m["revision"],
                commit=m["commit"],
                code_revision=m.get("code_revision"),
                files=tuple(LockedFile(f["path"], int(f["size"]), f["sha256"]) for f in m.get("files", [])),
                optimized=tuple(sorted((str(k), str(v)) for k, v in dict(m.get("optimized") or {}).items())),
            )
            if entry.name in entries:
                raise ValueError(f"model {entry.name!r} appears twice")
            entries[entry.name] = entry
        return entries
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:  # TOMLDecodeError is a ValueError
        raise ConfigError(f"{p} is not a valid hfp lock ({e}); run `hfp lock` to write it again.") from None


def dumps(entries: Mapping[str, LockEntry] | Iterable[LockEntry]) -> str:
    """The lock's text: deterministic for a given set of entries (sorted, fixed quoting, no timestamps)."""
    items = entries.values() if isinstance(entries, Mapping) else entries
    out = [
        "# hfp.lock: exact Hub commits and file hashes of the configured models. Written by `hfp lock`;",
        "# `hfp serve --locked` loads exactly these. Commit it beside hfp.toml.",
        f"version = {LOCK_VERSION}",
    ]
    for e in sorted(items, key=lambda e: e.name):
        out += ["", "[[model]]"]
        out += [f"name = {_q(e.name)}", f"source = {_q(e.source)}", f"revision = {_q(e.revision)}"]
        out.append(f"commit = {_q(e.commit)}")
        if e.code_revision:
            out.append(f"code_revision = {_q(e.code_revision)}")
        if e.optimized:
            out.append("optimized = { " + ", ".join(f"{_q(k)} = {_q(v)}" for k, v in e.optimized) + " }")
        if e.files:
            out.append("files = [")
            out += [
                f"  {{ path = {_q(f.path)}, size = {f.size}, sha256 = {_q(f.sha256)} }}," for f in e.files
            ]
            out.append("]")
        else:
            out.append("files = []")
    return "\n".join(out) + "\n"


def write_lock(path: str | os.PathLike[str], entries: Mapping[str, LockEntry] | Iterable[LockEntry]) -> None:
    """Replace the lock at `path` with `entries`, atomically (unique temp file in the same folder, then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(dumps(entries))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    finally:
        Path(tmp).unlink(missing_ok=True)


def update_entry(path: str | os.PathLike[str], entry: LockEntry, *, timeout: float = 30.0) -> None:
    """Set one model's entry (add or replace), keeping every other entry as it is on disk now."""
    _modify(path, lambda entries: entries.__setitem__(entry.name, entry), timeout)


def remove_entry(path: str | os.PathLike[str], name: str, *, timeout: float = 30.0) -> None:
    _modify(path, lambda entries: entries.pop(name, None), timeout)


def _modify(path: str | os.PathLike[str], change: Any, timeout: float) -> None:
    # huggingface_hub's own file lock (its cache's downloads use it): falls back to a soft lock where the
    # filesystem has no flock, and keeps us from depending on filelock directly.
    from huggingface_hub.utils import WeakFileLock

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(str(p) + ".lock", timeout=timeout):
        entries = read_lock(p)
        change(entries)
        write_lock(p, entries)


def _q(s: str) -> str:
    # A JSON string is a valid TOML basic string for everything a name, repo id or path holds (escapes included).
    return json.dumps(s, ensure_ascii=False)


__all__ = [
    "LOCK_NAME",
    "LockEntry",
    "LockedFile",
    "dumps",
    "entry_from_snapshot",
    "lock_path_for",
    "read_lock",
    "remove_entry",
    "update_entry",
    "write_lock",
]
