"""Supervisor: background loops survive their own exceptions, are counted, and a dead one is reported."""

from __future__ import annotations

import threading

import pytest

from hf_provider.resilience.supervisor import Supervisor


def test_a_failing_iteration_is_reported_counted_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []
    sv = Supervisor(on_error=seen.append)
    runs = {"n": 0}
    done = threading.Event()

    def body() -> bool:
        runs["n"] += 1
        if runs["n"] == 2:
            raise ValueError("one bad iteration")
        if runs["n"] == 4:
            done.set()
            return False
        return True

    t = sv.spawn("worker", body)
    assert done.wait(10)
    t.join(10)
    assert runs["n"] == 4 and seen == ["worker"] and sv.errors == {"worker": 1}
    assert "internal error in worker" in caplog.text and "one bad iteration" in caplog.text  # with traceback
    assert sv.down() == {}  # the later runs succeeded, and it stopped on purpose


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_thread_that_dies_is_down_until_forgotten() -> None:
    sv = Supervisor()

    def body() -> bool:
        raise SystemExit  # not an Exception: escapes the per-iteration guard and ends the thread

    t = sv.spawn("stage/m", body)
    t.join(10)
    assert sv.down() == {"stage/m": "thread ended unexpectedly"}
    sv.forget("m")
    assert sv.down() == {}


def test_guard_and_call_never_raise_and_listeners_cannot_break_reporting() -> None:
    def broken_listener(component: str) -> None:
        raise RuntimeError("listener bug")

    sv = Supervisor(on_error=broken_listener)
    with sv.guard("loader"):
        raise KeyError("x")
    assert sv.down() == {"loader": "KeyError"}
    with sv.guard("loader"):
        pass
    assert sv.down() == {}
    sv.call("hook", lambda: 1 / 0)
    assert sv.errors == {"loader": 1, "hook": 1}
    assert "hook" not in sv.down()  # a failing callback is counted but downs nothing
