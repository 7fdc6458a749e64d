"""Background work steps aside for forward passes (runtime/foreground.py): a thread inside
`yield_to_forwards` waits at its Python calls while a pass runs, is never starved, keeps a debugger's or
coverage's trace function working, and the schedulers' forward stages report their passes.

No sleeps: the waits are observed through a Foreground whose wait signals the test, and the starvation bound
runs on a fake clock.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from hf_provider.resilience.supervisor import Supervisor
from hf_provider.runtime.foreground import FOREGROUND, Foreground
from hf_provider.scheduling.batcher import ModelScheduler
from hf_provider.scheduling.worker import StageRunner
from hf_provider.spec import BatchingSpec
from hf_provider.types import Item, RowControl

WAIT = 10.0  # bound on waiting for another thread; never a sleep


class Watched(Foreground):
    """A Foreground that says when a background thread starts waiting."""

    def __init__(self, clock: Any = None) -> None:
        super().__init__(*([clock] if clock is not None else []))
        self.waiting = threading.Event()

    def wait_idle(self, timeout: float) -> bool:
        self.waiting.set()
        return super().wait_idle(timeout)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TimesOut(Foreground):
    """Every wait times out at once and moves the fake clock by its length: a model busy without a gap."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.fake = clock

    def wait_idle(self, timeout: float) -> bool:
        self.fake.now += timeout
        return False


def work(done: list[int]) -> None:
    done.append(1)


def in_background(
    fg: Foreground, fn: Any, **kw: Any
) -> tuple[threading.Thread, list[Any], list[BaseException]]:
    stats: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with fg.yield_to_forwards(**kw) as s:
                stats.append(s)
                fn()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t, stats, errors


def test_background_python_waits_while_a_forward_pass_runs_and_goes_on_after_it() -> None:
    fg = Watched()
    done: list[int] = []
    with fg.forward_pass():
        t, stats, errors = in_background(fg, lambda: work(done), max_wait_s=WAIT * 10)
        assert fg.waiting.wait(WAIT)
        assert done == []  # held at its call of work() while the pass runs
    t.join(WAIT)
    assert not t.is_alive() and not errors
    assert done == [1]
    assert stats[0].waits >= 1 and stats[0].slices == 0


def test_without_a_forward_pass_background_work_never_waits() -> None:
    fg = Watched()
    done: list[int] = []
    t, stats, errors = in_background(fg, lambda: [work(done) for _ in range(100)])
    t.join(WAIT)
    assert not errors and len(done) == 100
    assert not fg.waiting.is_set() and stats[0].waits == 0


def test_a_model_busy_without_gaps_still_lets_background_work_progress_in_slices() -> None:
    clock = FakeClock()
    fg = TimesOut(clock)
    done: list[int] = []

    def step() -> None:  # each call of the background work takes 4 ms of the fake clock
        clock.now += 0.004
        done.append(1)

    def many() -> None:
        for _ in range(30):
            step()

    with fg.forward_pass():
        t, stats, errors = in_background(fg, many, max_wait_s=0.05, slice_s=0.01)
        t.join(WAIT)
    assert not errors and len(done) == 30
    s = stats[0]
    # a slice of 10 ms holds 3 calls of 4 ms: about 30 / 3 slices, each after 50 ms of waiting
    assert 8 <= s.slices <= 11
    assert s.waited_s == pytest.approx(0.05 * s.slices, rel=0.25)


def test_the_trace_function_already_set_keeps_its_events_and_is_restored_even_after_an_error() -> None:
    fg = Foreground()
    seen: list[str] = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if event == "call":
            seen.append(frame.f_code.co_name)
        return None

    def boom() -> None:
        work([])
        raise ValueError("the load failed")

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        with pytest.raises(ValueError, match="the load failed"), fg.yield_to_forwards():
            boom()
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(previous)
    assert "boom" in seen and "work" in seen


def test_a_forward_pass_that_raises_still_ends_and_releases_the_waiters() -> None:
    fg = Watched()
    done: list[int] = []
    with pytest.raises(RuntimeError), fg.forward_pass():
        assert fg.busy
        t, _, errors = in_background(fg, lambda: work(done), max_wait_s=WAIT * 10)
        assert fg.waiting.wait(WAIT)
        raise RuntimeError("out of memory")
    t.join(WAIT)
    assert not fg.busy and done == [1] and not errors


def test_concurrent_passes_keep_background_work_waiting_until_the_last_one_ends() -> None:
    fg = Watched()
    done: list[int] = []
    first, second = fg.forward_pass(), fg.forward_pass()
    first.__enter__()
    second.__enter__()
    t, _, _ = in_background(fg, lambda: work(done), max_wait_s=WAIT * 10)
    assert fg.waiting.wait(WAIT)
    first.__exit__(None, None, None)
    assert fg.busy and done == []
    second.__exit__(None, None, None)
    t.join(WAIT)
    assert done == [1]


class Probe:
    """An encoder-like handler whose forward pass records whether the process counted it as running."""

    task = "embeddings"
    streaming = False
    generative = False

    def __init__(self) -> None:
        self.busy_inside: list[bool] = []

    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        return [Item(inputs, 1)], dict(params), True

    def batch_key(self, params: Mapping[str, Any]) -> Any:
        return ()

    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any:
        return [i.data for i in items]

    def forward(self, batch: Any, params: Mapping[str, Any], control: RowControl | None = None) -> Any:
        self.busy_inside.append(FOREGROUND.busy)
        if batch == ["raise"]:
            raise RuntimeError("the forward pass failed")
        return batch

    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        return outputs


def test_the_schedulers_forward_stage_reports_each_pass_even_one_that_fails() -> None:
    spec = SimpleNamespace(batching=BatchingSpec(max_wait_ms=0))
    model = SimpleNamespace(name="m", spec=spec, commit=None, device=torch.device("cpu"))
    sv = Supervisor()
    sched = ModelScheduler(
        model,  # type: ignore[arg-type]
        runner=StageRunner(model, measure_memory=False),  # type: ignore[arg-type]
        supervisor=sv,
    )
    h = Probe()
    try:
        for text in ("a", "raise", "b"):
            items, params, single = h.parse(text, {})
            req = sched.submit(h, items, params, single=single)
            if text == "raise":
                with pytest.raises(RuntimeError):
                    req.result(WAIT)
            else:
                assert req.result(WAIT) == text
    finally:
        sched.close(WAIT)
    assert h.busy_inside == [True, True, True]
    assert not FOREGROUND.busy


def test_an_undisturbed_section_runs_during_a_forward_pass_and_yielding_resumes_after_it() -> None:
    fg = Watched()
    inside: list[int] = []
    after: list[int] = []
    entered, go, measured = threading.Event(), threading.Event(), threading.Event()

    def load_with_a_measurement() -> None:
        with fg.undisturbed():  # a timing measurement: must not wait for the forward pass
            entered.set()
            go.wait(WAIT)
            work(inside)
            measured.set()
        work(after)  # yielding again

    t, _, errors = in_background(fg, load_with_a_measurement, max_wait_s=WAIT * 10)
    assert entered.wait(WAIT)
    with fg.forward_pass():
        go.set()
        assert measured.wait(WAIT) and inside == [1]
        assert fg.waiting.wait(WAIT)
        assert after == []
    t.join(WAIT)
    assert not errors and after == [1]


def test_undisturbed_outside_a_yielding_block_changes_nothing() -> None:
    fg = Foreground()
    previous = sys.gettrace()
    with fg.undisturbed():
        assert sys.gettrace() is previous
    assert sys.gettrace() is previous
