"""The serve supervisor's policy: which exits are restarted, how long it waits, and that a stop is final."""

from __future__ import annotations

import signal
import threading
from typing import Any

from hf_provider.resilience.backoff import Backoff
from hf_provider.resilience.respawn import (
    LAST_EXIT_ENV,
    RESTARTS_ENV,
    Respawner,
    describe_exit,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeChild:
    """A child process whose exit code is scripted; `lives` seconds pass on the fake clock while it runs."""

    def __init__(self, code: int, lives: float, clock: Clock, env: dict[str, str]) -> None:
        self.code, self.lives, self.clock, self.env = code, lives, clock, env
        self.signals: list[int] = []

    def wait(self) -> int:
        self.clock.now += self.lives
        return self.code

    def poll(self) -> int | None:
        return None

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)


def scripted(codes: list[tuple[int, float]], clock: Clock) -> tuple[Any, list[FakeChild]]:
    children: list[FakeChild] = []

    def spawn(argv: list[str], *, env: dict[str, str], **_: Any) -> FakeChild:
        code, lives = codes[len(children)]
        children.append(FakeChild(code, lives, clock, env))
        return children[-1]

    return spawn, children


def test_backoff_doubles_while_children_die_young_and_resets_after_a_stable_run() -> None:
    b = Backoff(first=0.5, cap=4.0, reset_s=60.0)
    assert [b.failed(ran_s=1.0) for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert b.failed(ran_s=3600.0) == 0.5  # it had run for an hour: not a crash loop


def test_crashes_are_restarted_and_each_child_is_told_its_restart_count_and_why() -> None:
    clock = Clock()
    spawn, children = scripted([(-signal.SIGKILL, 5.0), (-signal.SIGSEGV, 5.0), (0, 1.0)], clock)
    r = Respawner(["serve"], clock=clock, spawn=spawn, backoff=Backoff(first=0.0))
    assert r.run() == 0
    assert r.restarts == 2
    assert [c.env[RESTARTS_ENV] for c in children] == ["0", "1", "2"]
    assert [c.env[LAST_EXIT_ENV] for c in children] == ["", "killed by SIGKILL", "killed by SIGSEGV"]


def test_a_config_error_is_not_restarted() -> None:
    clock = Clock()
    spawn, children = scripted([(2, 0.1)], clock)
    assert Respawner(["serve"], clock=clock, spawn=spawn).run() == 2
    assert len(children) == 1


def test_a_stop_during_the_backoff_wait_is_final() -> None:
    clock = Clock()
    spawn, children = scripted([(1, 0.1), (0, 0.0)], clock)
    r = Respawner(["serve"], clock=clock, spawn=spawn, backoff=Backoff(first=3600.0, cap=3600.0))
    threading.Timer(0.0, r.stop).start()  # while it waits an hour to restart
    assert r.run() == 1
    assert len(children) == 1


def test_stop_forwards_the_signal_to_the_running_child_and_it_is_not_restarted() -> None:
    clock = Clock()
    stopped: list[Respawner] = []

    class Child(FakeChild):
        def wait(self) -> int:
            stopped[0].stop(signal.SIGINT)  # Ctrl-C arrives while the child serves
            return -signal.SIGINT if signal.SIGINT in self.signals else 1

    def spawn(argv: list[str], *, env: dict[str, str], **_: Any) -> Child:
        return Child(0, 0.0, clock, env)

    r = Respawner(["serve"], clock=clock, spawn=spawn)
    stopped.append(r)
    assert r.run() == 128 + signal.SIGINT
    assert r.restarts == 0


def test_exits_are_described_by_signal_name() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exit code 3"
