"""Background work steps aside for forward passes (runtime/foreground.py): a thread inside `yield_to_forwards`
waits at its yield points (explicit ones, and torch's module, parameter and buffer registrations) while a pass
runs, never waits otherwise, is never starved, can be switched off, holds no lock while it waits and leaves the
thread's trace function alone; the schedulers' forward stages report their passes.

No sleeps: the waits are observed through a Foreground whose wait signals the test, and the starvation bound
runs on a fake clock.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from hf_provider.resilience.supervisor import Supervisor
from hf_provider.runtime.foreground import FOREGROUND, Foreground, YieldStats, yield_point
from hf_provider.scheduling.batcher import ModelScheduler
from hf_provider.scheduling.worker import StageRunner
from hf_provider.spec import BatchingSpec
from hf_provider.types import Item, RowControl

WAIT = 10.0  # bound on waiting for another thread; never a sleep
NEVER_STARVED = WAIT * 10  # a starvation bound no test reaches


class Watched(Foreground):
    """A Foreground that says when a background thread starts waiting."""

    def __init__(self, clock: Any = None) -> None:
        super().__init__(*([clock] if clock is not None else []))
        self.waiting = threading.Event()
        self.waits = 0

    def wait_idle(self, timeout: float) -> bool:
        self.waits += 1
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


def step(done: list[int]) -> None:
    yield_point()
    done.append(1)


def in_background(
    fg: Foreground, fn: Callable[[], Any], **kw: Any
) -> tuple[threading.Thread, list[YieldStats], list[BaseException]]:
    stats: list[YieldStats] = []
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


def test_a_yield_point_waits_while_a_forward_pass_runs_and_goes_on_after_it() -> None:
    fg = Watched()
    done: list[int] = []
    with fg.forward_pass():
        t, stats, errors = in_background(fg, lambda: step(done), max_wait_s=NEVER_STARVED)
        assert fg.waiting.wait(WAIT)
        assert done == []  # held at its yield point while the pass runs
    t.join(WAIT)
    assert not t.is_alive() and not errors
    assert done == [1]
    assert stats[0].waits == 1 and stats[0].slices == 0


def test_without_a_forward_pass_yield_points_never_wait() -> None:
    fg = Watched()
    done: list[int] = []
    t, stats, errors = in_background(fg, lambda: [step(done) for _ in range(100)])
    t.join(WAIT)
    assert not errors and len(done) == 100
    assert fg.waits == 0 and stats[0].waits == 0


def test_yield_points_outside_a_block_or_switched_off_never_wait_while_a_pass_runs() -> None:
    fg = Watched()
    done: list[int] = []
    with fg.forward_pass():
        step(done)  # this thread is in no block
        t, stats, errors = in_background(fg, lambda: [step(done), torch.nn.Linear(2, 2)], enabled=False)
        t.join(WAIT)
    assert not t.is_alive() and not errors
    assert done == [1, 1] and fg.waits == 0 and stats[0].waits == 0


def test_a_model_busy_without_gaps_still_lets_background_work_progress_in_slices() -> None:
    clock = FakeClock()
    fg = TimesOut(clock)

    def many() -> None:  # 30 steps of the background work, each 4 ms of the fake clock after its yield point
        for _ in range(30):
            yield_point()
            clock.now += 0.004

    with fg.forward_pass():
        t, stats, errors = in_background(fg, many, max_wait_s=0.05, slice_s=0.01)
        t.join(WAIT)
    assert not errors
    s = stats[0]
    # each wait runs out after 50 ms and buys a 10 ms slice, which holds that step and the next two
    assert (s.waits, s.slices) == (10, 10)
    assert s.waited_s == pytest.approx(0.5)


def test_a_forward_pass_that_raises_still_ends_and_releases_the_waiters() -> None:
    fg = Watched()
    done: list[int] = []
    with pytest.raises(RuntimeError), fg.forward_pass():
        assert fg.busy
        t, _, errors = in_background(fg, lambda: step(done), max_wait_s=NEVER_STARVED)
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
    t, _, _ = in_background(fg, lambda: step(done), max_wait_s=NEVER_STARVED)
    assert fg.waiting.wait(WAIT)
    first.__exit__(None, None, None)
    assert fg.busy and done == []
    second.__exit__(None, None, None)
    t.join(WAIT)
    assert done == [1]


def test_a_waiting_thread_holds_no_lock_that_passes_or_other_threads_need() -> None:
    fg = Watched()
    done: list[int] = []
    shared = threading.Lock()  # as ModelManager._lock: taken around a step, released before the yield point

    def load() -> None:
        with shared:
            done.append(0)
        step(done)

    with fg.forward_pass():
        t, _, errors = in_background(fg, load, max_wait_s=NEVER_STARVED)
        assert fg.waiting.wait(WAIT)
        assert shared.acquire(timeout=WAIT)  # the event loop's submit would get it now
        shared.release()
        with fg.forward_pass():  # and another pass starts and ends: the Foreground's own lock is free too
            assert done == [0]
    t.join(WAIT)
    assert not errors and done == [0, 1]


def test_building_a_module_in_a_block_waits_at_its_registrations_and_other_threads_never_do() -> None:
    fg = Watched()
    built: list[torch.nn.Module] = []
    outside = threading.Event()
    with fg.forward_pass():
        t, stats, errors = in_background(
            fg, lambda: built.append(torch.nn.Linear(4, 4)), max_wait_s=NEVER_STARVED
        )
        assert fg.waiting.wait(WAIT)
        assert built == []  # held inside the module's construction
        other = threading.Thread(target=lambda: (torch.nn.Linear(4, 4), outside.set()))  # in no block
        other.start()
        assert outside.wait(WAIT)
    t.join(WAIT)
    other.join(WAIT)
    assert not errors and len(built) == 1 and stats[0].waits >= 1


def test_a_trace_function_set_inside_the_block_stays_and_one_set_before_is_never_replaced() -> None:
    fg = Foreground()
    seen: list[str] = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if event == "call":
            seen.append(frame.f_code.co_name)
        return None

    def debugged() -> None:
        step([])

    previous = sys.gettrace()
    try:
        with fg.yield_to_forwards():
            sys.settrace(tracer)  # breakpoint() inside the load sets one, as a debugger would
            debugged()
        assert sys.gettrace() is tracer
        with pytest.raises(ValueError, match="the load failed"), fg.yield_to_forwards():
            assert sys.gettrace() is tracer
            raise ValueError("the load failed")
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(previous)
    assert "debugged" in seen and "yield_point" in seen


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
            step(inside)
            measured.set()
        step(after)  # yielding again

    t, _, errors = in_background(fg, load_with_a_measurement, max_wait_s=NEVER_STARVED)
    assert entered.wait(WAIT)
    with fg.forward_pass():
        go.set()
        assert measured.wait(WAIT) and inside == [1]
        assert fg.waiting.wait(WAIT)
        assert after == []
    t.join(WAIT)
    assert not errors and after == [1]
