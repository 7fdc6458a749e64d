"""Check a snapshot's files before a load, and repair what is bad by downloading that one file again.

What a file should be comes from the lock entry when there is one (sha256 and size), else from what the Hub
advertised at download: the tree listing huggingface_hub caches beside the snapshot (`get_cached_repo_tree`: the
LFS sha256, or the git blob sha1 of a small file) and, failing that, the blob's own name in the cache, which is
the download's ETag (a sha256 for LFS files, a git blob sha1 for the others). Safetensors headers are checked for
consistency on every load (a few KB read); digests are recorded by (inode, size, mtime) in the cache state, so
a warm restart reads no file twice.

A bad file is moved to a quarantine folder (kept for inspection, the last few only) and its snapshot link
removed; then only that file is downloaded again (`hf_hub_download` of that path at that commit), verified, and
the load goes on. Offline, or when the Hub sends bad bytes again, the load fails with `CacheCorrupt` naming the
file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hf_provider.cache.hashing import Algorithm, digest_file
from hf_provider.cache.state import CacheState, state_dir, state_for
from hf_provider.errors import CacheCorrupt


class Locked(Protocol):
    """What integrity reads of a lock entry (hub/lockfile.py LockEntry): each file's path, sha256 and size.
    A protocol because hub/ builds on the cache, not the other way round."""

    @property
    def files(self) -> tuple[Any, ...]: ...


log = logging.getLogger(__name__)

QUARANTINE_KEEP = 8  # quarantined files kept for inspection; older ones are deleted
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "F4": 1, "F6_E2M3": 1, "F6_E3M2": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
    "C64": 8,
}  # fmt: skip
_SUBBYTE = {"F4": 0.5, "F6_E2M3": 0.75, "F6_E3M2": 0.75}
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors format's own limit
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Expected:
    path: str  # relative to the snapshot
    digest: str
    algorithm: Algorithm
    size: int | None = None


@dataclass(frozen=True)
class Verdict:
    path: str
    ok: bool
    reason: str | None = None  # what is wrong: missing, size, digest, header
    hashed: bool = (
        False  # read and hashed now (False: the recorded verdict was still valid, or no hash needed)
    )


def file_digest(path: Path, algorithm: Algorithm, state: CacheState | None = None) -> tuple[str, bool]:
    """(digest, hashed now) of the file behind `path`, reusing the recorded one while the file is unchanged."""
    real = Path(os.path.realpath(path))
    st = real.stat()
    if state is not None and (known := state.digest(real, algorithm, st)) is not None:
        return known, False
    digest = digest_file(real, algorithm)
    if state is not None:
        after = real.stat()  # changed while we read it: do not record a digest for bytes that are gone
        if (after.st_ino, after.st_size, after.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns):
            state.record_digest(real, algorithm, st, digest)
    return digest, True


def file_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """sha256 of a file, through the verdict record of `cache_dir` (the current HF cache when None)."""
    from hf_provider.cache.hubenv import HubEnv

    state = state_for(cache_dir or HubEnv.current().cache_dir)
    return file_digest(Path(path), "sha256", state)[0]


def safetensors_problem(path: Path) -> str | None:
    """Why the file's safetensors header is inconsistent (None: it is consistent). Reads only the header."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return "shorter than a safetensors header"
            (n,) = struct.unpack("<Q", head)
            if n > min(_MAX_HEADER, size - 8):
                return f"header length {n} does not fit the file's {size} bytes"
            header = json.loads(f.read(n))
    except (OSError, ValueError) as e:  # UnicodeDecodeError, JSONDecodeError are ValueErrors
        return f"unreadable header ({type(e).__name__})"
    if not isinstance(header, dict):
        return "header is not a JSON object"
    data_len, spans = size - 8 - n, []
    for name, t in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(x) for x in t["data_offsets"])
            count = 1
            for d in t["shape"]:
                count *= int(d)
            width = _SUBBYTE.get(t["dtype"], _DTYPE_BYTES[t["dtype"]])
        except (KeyError, TypeError, ValueError):
            return f"tensor {name!r} has a malformed entry"
        if not 0 <= begin <= end <= data_len:
            return f"tensor {name!r} lies outside the file ({begin}..{end} of {data_len} data bytes)"
        if end - begin != int(count * width + 0.999):
            return f"tensor {name!r} holds {end - begin} bytes, its shape and dtype need {count * width:g}"
        spans.append((begin, end))
    spans.sort()
    covered = 0
    for begin, end in spans:
        if begin != covered:
            return f"tensor data overlaps or leaves a gap at byte {covered}"
        covered = end
    if covered != data_len:
        return f"tensors cover {covered} of the file's {data_len} data bytes"
    return None


def expected_files(
    repo_id: str, commit: str, snapshot: Path, cache_dir: Path, entry: Locked | None = None
) -> dict[str, Expected]:
    """What each file of the snapshot should be. From the lock entry when given (every file it lists, present
    or not), else from the cached tree listing and the blob names (files present in the snapshot only)."""
    if entry is not None:
        return {f.path: Expected(f.path, f.sha256, "sha256", f.size) for f in entry.files}
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    tree: dict[str, Any] = {}
    with contextlib.suppress(CachedRepoTreeNotFoundError):  # cache filled by something else: blob names only
        tree = {f.path: f for f in get_cached_repo_tree(repo_id, revision=commit, cache_dir=cache_dir)}
    out: dict[str, Expected] = {}
    for p in sorted(snapshot.rglob("*")):
        if p.is_dir():
            continue
        rel = p.relative_to(snapshot).as_posix()
        f = tree.get(rel)
        size = getattr(f, "size", None)
        lfs = getattr(f, "lfs", None)
        # The blob is named after the ETag the Hub sent with it: the sha256 of an LFS file. (The cached tree's
        # blob_id of an LFS file is its pointer's, and huggingface_hub 2.x leaves `lfs` out of cached trees.)
        blob = Path(os.readlink(p)).name if p.is_symlink() else ""
        if lfs is not None and getattr(lfs, "sha256", None):
            out[rel] = Expected(rel, str(lfs.sha256).lower(), "sha256", size)
        elif _HEX64.match(blob):
            out[rel] = Expected(rel, blob, "sha256", size)
        elif f is not None and getattr(f, "blob_id", None):
            out[rel] = Expected(rel, str(f.blob_id).lower(), "git-sha1", size)
        elif _HEX40.match(blob):
            out[rel] = Expected(rel, blob, "git-sha1", size)
    return out


def verify(snapshot: Path, expected: Mapping[str, Expected], state: CacheState | None) -> list[Verdict]:
    """A verdict per expected file: present, of the right size, a consistent safetensors header, the digest."""
    verdicts = []
    for rel, exp in sorted(expected.items()):
        p = snapshot / rel
        if not p.exists():
            verdicts.append(Verdict(rel, False, "missing"))
            continue
        size = p.stat().st_size
        if exp.size is not None and size != exp.size:
            verdicts.append(Verdict(rel, False, f"size {size}, expected {exp.size}"))
            continue
        if rel.endswith(".safetensors") and (why := safetensors_problem(p)):
            verdicts.append(Verdict(rel, False, f"safetensors header: {why}"))
            continue
        digest, hashed = file_digest(p, exp.algorithm, state)
        if digest != exp.digest:
            verdicts.append(
                Verdict(rel, False, f"{exp.algorithm} {digest[:12]}…, expected {exp.digest[:12]}…", hashed)
            )
        else:
            verdicts.append(Verdict(rel, True, None, hashed))
    return verdicts


def quarantine(snapshot: Path, rel: str, cache_dir: Path, state: CacheState | None) -> Path | None:
    """Move the bad file (the blob behind the snapshot link) out of the cache; return where it went."""
    link = snapshot / rel
    real = Path(os.path.realpath(link))
    qdir = state_dir(cache_dir) / "quarantine"
    qdir.mkdir(parents=True, exist_ok=True)
    dest = qdir / f"{time.time_ns()}-{rel.replace('/', '_')}"
    moved: Path | None = None
    if real.exists():
        shutil.move(str(real), dest)
        moved = dest
    if link.is_symlink() or link.exists():
        link.unlink(missing_ok=True)
    if state is not None:
        state.drop_digests(real)
    for old in sorted(qdir.iterdir())[:-QUARANTINE_KEEP]:
        old.unlink(missing_ok=True)
    return moved


def ensure_intact(
    *,
    model: str,
    repo_id: str,
    commit: str,
    snapshot: Path,
    cache_dir: Path,
    endpoint: str,
    offline: bool,
    entry: Locked | None = None,
    state: CacheState | None = None,
) -> list[str]:
    """Verify the snapshot; quarantine and download again each bad file. Returns the paths repaired.

    Raises CacheCorrupt (naming the file) when a bad file cannot be repaired: offline, the Hub unreachable, or
    the Hub sending bytes that do not match either.
    """
    state = state or state_for(cache_dir)
    # Two models on one repo (or a swap and a load) check the same snapshot: one at a time, so a file is
    # quarantined and fetched once, never moved away under the other's check.
    with _snapshot_lock(snapshot):
        expected = expected_files(repo_id, commit, snapshot, cache_dir, entry)
        bad = [v for v in verify(snapshot, expected, state) if not v.ok]
        repaired = []
        for v in bad:
            log.warning(
                "%s: %s@%s file %s is corrupt (%s); quarantining it",
                model,
                repo_id,
                commit[:8],
                v.path,
                v.reason,
            )
            quarantine(snapshot, v.path, cache_dir, state)
            if offline:
                raise CacheCorrupt(
                    f"model {model!r}: cached file {v.path} of {repo_id}@{commit} is corrupt ({v.reason}) and the "
                    "Hub is offline; it was quarantined: run once online to download it again.",
                    model=model,
                    file=v.path,
                )
            _download_one(model, repo_id, commit, v.path, cache_dir, endpoint)
            (again,) = verify(snapshot, {v.path: expected[v.path]}, state)
            if not again.ok:
                quarantine(snapshot, v.path, cache_dir, state)
                raise CacheCorrupt(
                    f"model {model!r}: file {v.path} of {repo_id}@{commit} downloaded again is still bad "
                    f"({again.reason}); the Hub or a proxy is sending corrupted bytes.",
                    model=model,
                    file=v.path,
                )
            log.info("%s: repaired %s by downloading that one file again", model, v.path)
            repaired.append(v.path)
    return repaired


_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def _snapshot_lock(snapshot: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(Path(snapshot), threading.Lock())


def _download_one(model: str, repo_id: str, commit: str, rel: str, cache_dir: Path, endpoint: str) -> None:
    from huggingface_hub import hf_hub_download

    from hf_provider.cache.hubenv import hub_online as _hub_online

    try:
        with _hub_online():
            hf_hub_download(repo_id, rel, revision=commit, cache_dir=cache_dir, endpoint=endpoint)
    except Exception as e:  # any failure leaves the file missing: say which file and why, typed
        raise CacheCorrupt(
            f"model {model!r}: cached file {rel} of {repo_id}@{commit} was corrupt and quarantined, and "
            f"downloading it again failed ({type(e).__name__}: {e}); retry when the Hub is reachable.",
            model=model,
            file=rel,
        ) from e


__all__ = [
    "Expected",
    "Verdict",
    "ensure_intact",
    "expected_files",
    "file_digest",
    "file_sha256",
    "quarantine",
    "safetensors_problem",
    "verify",
]
