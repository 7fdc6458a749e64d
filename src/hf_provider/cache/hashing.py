"""Streaming file digests: sha256 (LFS files, lock entries) and git blob sha1 (small files, whose Hub ETag is it).

The file is memory-mapped and handed to hashlib in one call: no copy of the file in the process's memory (the
pages are the page cache's own, clean and reclaimable), no per-chunk Python loop, and the digest runs with the
GIL released. On this machine that reaches the digest's in-memory speed, where `hashlib.file_digest` (256 KiB
reads into a buffer) reached about 0.85x of it (bench/hashing.py prints both). Files that cannot be mapped (empty,
or on a filesystem without mmap) are read in chunks instead.

Inside `in_background()` (a swap's fetch, while the serving version takes every request) a digest runs on a
thread of its own at the lowest CPU priority: hashing a 90 MB file is 0.2 s of a core, and on a machine whose cores
the serving model keeps busy it stretched that model's forward passes (their OpenMP threads wait for each other at
every parallel region when one is descheduled) by as much. At nice 19 it takes the cores' idle moments instead.
The digest releases the GIL, so a low-priority thread holds nothing a request waits for.
"""

from __future__ import annotations

import contextvars
import hashlib
import mmap
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Literal, TypeVar

Algorithm = Literal["sha256", "git-sha1"]
CHUNK = 8 * 1024 * 1024  # the chunked fallback's read size
T = TypeVar("T")
_background = contextvars.ContextVar("hfp_background_hashing", default=False)


@contextmanager
def in_background() -> Iterator[None]:
    """Digests computed in this block (this thread) run at the lowest CPU priority (see the module's doc)."""
    token = _background.set(True)
    try:
        yield
    finally:
        _background.reset(token)


def _niced(fn: Callable[[], T]) -> T:
    """`fn()` on a new thread at nice 19 (a thread's own priority on Linux), its result or exception returned."""
    out: list[T] = []
    err: list[BaseException] = []

    def run() -> None:
        with suppress(OSError):  # not permitted here: hash at normal priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            out.append(fn())
        except BaseException as e:
            err.append(e)

    t = threading.Thread(target=run, name="hfp-hash-background", daemon=True)
    t.start()
    t.join()
    if err:
        raise err[0]
    return out[0]


def _digest(path: str | os.PathLike[str], h: hashlib._Hash) -> str:
    if _background.get() and sys.platform.startswith("linux"):
        return _niced(lambda: _digest_now(path, h))
    return _digest_now(path, h)


def _digest_now(path: str | os.PathLike[str], h: hashlib._Hash) -> str:
    with open(path, "rb", buffering=0) as f:
        try:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                if hasattr(m, "madvise"):
                    m.madvise(mmap.MADV_SEQUENTIAL)  # read ahead aggressively, drop behind
                h.update(m)
                return h.hexdigest()
        except (ValueError, OSError):  # empty file, or no mmap here: stream it
            f.seek(0)
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            while n := f.readinto(buf):
                h.update(view[:n])
            return h.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    return _digest(path, hashlib.sha256())


def git_sha1_file(path: str | os.PathLike[str]) -> str:
    """The git blob id: sha1 of `blob <size>\\0` and the content (the Hub's ETag of a non-LFS file)."""
    return _digest(path, hashlib.sha1(b"blob %d\0" % os.stat(path).st_size))


def digest_file(path: str | os.PathLike[str], algorithm: Algorithm) -> str:
    if algorithm == "sha256":
        return sha256_file(path)
    if algorithm == "git-sha1":
        return git_sha1_file(path)
    raise ValueError(f"unknown digest {algorithm!r}: use 'sha256' or 'git-sha1'")


def algorithm_of(expected: str) -> Algorithm:
    """sha256 for 64 hex characters, git-sha1 for 40 (the two kinds of Hub ETag and cache blob name)."""
    if len(expected) == 64:
        return "sha256"
    if len(expected) == 40:
        return "git-sha1"
    raise ValueError(f"{expected!r} is neither a sha256 nor a git sha1")


__all__ = ["CHUNK", "algorithm_of", "digest_file", "git_sha1_file", "sha256_file"]
