"""A version loads at a low CPU priority; the threads it starts (its stage threads) serve at the caller's."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from hf_provider.lifecycle import priority


def _nice(native_id: int | None = None) -> int:
    return os.getpriority(os.PRIO_PROCESS, native_id or threading.get_native_id())


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not priority.can_lower(), reason="needs Linux nice"
)
def test_the_load_runs_low_and_its_threads_come_back() -> None:
    base = _nice()
    started = threading.Event()
    stop = threading.Event()
    seen: dict[str, int] = {}

    def child() -> None:
        seen["child at start"] = _nice()
        started.set()
        stop.wait(10)

    def load() -> threading.Thread:
        seen["load"] = _nice()
        t = threading.Thread(target=child)
        t.start()
        started.wait(10)
        return t

    t = priority.at_low_priority(load)
    try:
        assert seen == {"load": priority.LOW, "child at start": priority.LOW}  # inherited while loading
        assert _nice(t.native_id) == base  # serving at the caller's priority afterwards
        assert _nice() == base
    finally:
        stop.set()
        t.join()


def test_an_error_of_the_load_reaches_the_caller() -> None:
    def fail() -> None:
        raise ValueError("bad weights")

    with pytest.raises(ValueError, match="bad weights"):
        priority.at_low_priority(fail)


def test_without_the_right_to_come_back_the_load_runs_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(priority, "can_lower", lambda: False)
    me = threading.get_ident()
    assert priority.at_low_priority(threading.get_ident) == me
