"""Streaming file digests: sha256 (LFS files, lock entries) and git blob sha1 (small files, whose Hub ETag is it).

Files are read in large chunks into one reused buffer (no copy of the file in memory); `hashlib.file_digest`
does exactly that for sha256 and runs the digest with the GIL released, so one core reaches the digest's own
speed (bench/hashing.py prints it). A git blob sha1 hashes a `blob <size>\\0` header first, which file_digest
cannot do, hence the loop for that one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

Algorithm = Literal["sha256", "git-sha1"]
CHUNK = 8 * 1024 * 1024  # large enough that per-read overhead vanishes, small enough to stay in L2/L3


def sha256_file(path: str | os.PathLike[str]) -> str:
    with open(path, "rb", buffering=0) as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def git_sha1_file(path: str | os.PathLike[str]) -> str:
    p = Path(path)
    h = hashlib.sha1(b"blob %d\0" % p.stat().st_size)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(p, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


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
