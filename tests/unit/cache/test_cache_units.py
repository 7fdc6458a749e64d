"""cache/: digests (mapped and chunked paths), verdict records keyed by (inode, size, mtime), pins."""

from __future__ import annotations

import gc
import hashlib
import os
from pathlib import Path

import pytest

from hf_provider.cache import pins
from hf_provider.cache.hashing import algorithm_of, digest_file, git_sha1_file, sha256_file
from hf_provider.cache.integrity import file_digest
from hf_provider.cache.state import CacheState


@pytest.mark.parametrize("data", [b"", b"hello", os.urandom(3 * 1024 * 1024 + 7)])
def test_digests_match_hashlib_and_git(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "f"
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest() == digest_file(p, "sha256")
    assert git_sha1_file(p) == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_algorithm_of_and_unknown_digest(tmp_path: Path) -> None:
    assert algorithm_of("a" * 64) == "sha256" and algorithm_of("a" * 40) == "git-sha1"
    with pytest.raises(ValueError, match="neither"):
        algorithm_of("abc")
    with pytest.raises(ValueError, match="unknown digest"):
        digest_file(tmp_path, "md5")  # type: ignore[arg-type]


def _age(p: Path, seconds: float = 10.0) -> None:
    """Make the file look written `seconds` ago (a cache file downloaded earlier)."""
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


def test_a_recorded_digest_is_reused_until_the_file_changes(tmp_path: Path) -> None:
    state = CacheState(None)
    p = tmp_path / "w.safetensors"
    p.write_bytes(b"x" * 1000)
    _age(p)
    d1, hashed1 = file_digest(p, "sha256", state)
    d2, hashed2 = file_digest(p, "sha256", state)
    assert (hashed1, hashed2) == (True, False) and d1 == d2
    p.write_bytes(b"y" * 1000)  # same size, new mtime
    d3, hashed3 = file_digest(p, "sha256", state)
    assert hashed3 and d3 == hashlib.sha256(b"y" * 1000).hexdigest()
    _age(p)
    file_digest(p, "sha256", state)
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert file_digest(p, "sha256", state)[1]  # any mtime change means hash again


def test_a_digest_recorded_in_the_files_own_timestamp_tick_is_not_trusted(tmp_path: Path) -> None:
    """Racy git: a write in the same coarse-clock tick as the one hashed leaves (inode, size, mtime) as they were;
    a file hashed right after its last write is therefore hashed again at its next check."""
    state = CacheState(None)
    p = tmp_path / "w.safetensors"
    p.write_bytes(b"x" * 1000)
    st = p.stat()
    assert file_digest(p, "sha256", state)[1]
    p.write_bytes(b"z" * 1000)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same tick: stat cannot tell the files apart
    assert file_digest(p, "sha256", state) == (hashlib.sha256(b"z" * 1000).hexdigest(), True)


def test_access_records_keep_the_latest_use(tmp_path: Path) -> None:
    state = CacheState(tmp_path / "s.sqlite")
    state.touch("org/a", "1" * 40, 10.0)
    state.touch("org/a", "1" * 40, 5.0)  # an older record never moves recency back
    state.touch("org/b", "2" * 40, 7.0)
    assert state.last_used() == {("org/a", "1" * 40): 10.0, ("org/b", "2" * 40): 7.0}
    state.forget("org/a", "1" * 40)
    assert CacheState(tmp_path / "s.sqlite").last_used() == {("org/b", "2" * 40): 7.0}  # on disk


def test_pins_count_references_and_holders_drop_out_when_collected() -> None:
    c = "c" * 40
    pins.pin("org/x", c, "swapping")
    with pins.pinned("org/x", c, "swapping"):
        assert pins.reasons("org/x", c) == {"swapping"}
    assert pins.is_pinned("org/x", c)  # the outer pin still holds
    pins.unpin("org/x", c, "swapping")
    assert not pins.is_pinned("org/x", c)

    class Holder:
        def loaded(self) -> list[tuple[str, str]]:
            return [("org/y", c)]

    h = Holder()
    pins.register_holder(h.loaded)
    assert pins.reasons("org/y", c) == {"loaded"}
    del h
    gc.collect()
    assert not pins.is_pinned("org/y", c)


def test_background_hashing_runs_at_the_lowest_priority_and_gives_the_same_digest(tmp_path) -> None:
    import os
    import sys
    import threading

    from hf_provider.cache import hashing

    f = tmp_path / "blob"
    f.write_bytes(os.urandom(3 * 1024 * 1024))
    plain = hashing.sha256_file(f)
    with hashing.in_background():
        assert hashing.sha256_file(f) == plain
        assert hashing.git_sha1_file(f) == hashing._digest_now(
            f, hashing.hashlib.sha1(b"blob %d\0" % (3 << 20))
        )
    if sys.platform.startswith("linux"):
        nice = hashing._niced(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        assert nice == 19
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) != 19  # the caller's is untouched
    with pytest.raises(FileNotFoundError), hashing.in_background():
        hashing.sha256_file(tmp_path / "missing")
