"""ContinuousLoop (scheduling/continuous.py) with a fake pausable engine and a fake clock: what it pauses, resumes
and takes between two steps, step by step.

The engine's `step` announces itself and waits for the test to release it, so the test changes the clock and
submits work while the loop is parked inside step k; the loop's next decision (made after step k returns) is then
what step k+1 runs. No sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from tests.unit.scheduling.test_scheduler import Clock, Echo

from hf_provider.observability.outcomes import Recorder as OutcomeRecorder
from hf_provider.resilience.supervisor import Supervisor
from hf_provider.scheduling.batcher import ModelScheduler
from hf_provider.scheduling.continuous import HOLD_STEPS
from hf_provider.scheduling.worker import StageRunner
from hf_provider.spec import BatchingSpec
from hf_provider.types import GenRow, Item

WAIT = 10.0  # a bound on waiting for the loop's thread; never a sleep


class Gen:
    """A generation handler of a given task: each input is how many tokens its row makes."""

    streaming = False
    generative = True

    def __init__(self, task: str) -> None:
        self.task = task

    parse = Echo.parse  # an item's data is its token count
    batch_key = Echo.batch_key


class FakeEngine:
    """Pausable: each step, every running row makes one token; `log` holds each step's running rows' tasks."""

    pausable = True

    def __init__(self, slots: int = 4) -> None:
        self.slots = slots
        self.rows: dict[int, dict[str, Any]] = {}
        self.entered = threading.Semaphore(0)
        self.go = threading.Semaphore(0)
        self.log: list[list[str]] = []
        self._next = 0

    @property
    def running(self) -> list[int]:
        return [rid for rid, r in self.rows.items() if not r["paused"]]

    @property
    def free_slots(self) -> int:
        return self.slots - len(self.running)

    @property
    def busy(self) -> bool:
        return bool(self.running)

    @property
    def paused(self) -> list[int]:
        return [rid for rid, r in self.rows.items() if r["paused"]]

    def accepts(self, handler: Any) -> bool:
        return True

    def add_item(self, handler: Any, item: Item, params: Mapping[str, Any], row: GenRow) -> int:
        rid, self._next = self._next, self._next + 1
        self.rows[rid] = {"task": handler.task, "left": item.data, "row": row, "paused": False, "made": 0}
        return rid

    def pause(self, rid: int) -> bool:
        self.rows[rid]["paused"] = True
        return True

    def resume(self, rid: int) -> bool:
        self.rows[rid]["paused"] = False
        return True

    def step(self, count: Callable[[int], None] | None = None) -> int:
        self.entered.release()
        assert self.go.acquire(timeout=WAIT)
        self.log.append([self.rows[rid]["task"] for rid in self.running])
        made = 0
        for rid in self.running:
            r = self.rows[rid]
            if r["row"].stop_reason() is not None:
                del self.rows[rid]
                continue
            r["left"] -= 1
            r["made"] += 1
            made += 1
            if r["left"] <= 0:
                del self.rows[rid]
                r["row"].finish({"tokens": r["made"]})
        return made

    def abort(self, error: BaseException) -> None:
        rows, self.rows = self.rows, {}
        for r in rows.values():
            r["row"].fail(error)


class Quiet:
    """An observer that records nothing."""

    def __getattr__(self, hook: str) -> Callable[..., None]:
        return lambda *a, **k: None


class Harness:
    def __init__(self, **spec: Any) -> None:
        self.clock = Clock()
        self.engine = FakeEngine()
        model_spec = SimpleNamespace(batching=BatchingSpec(max_wait_ms=0), **spec)
        model = SimpleNamespace(name="m", spec=model_spec, commit=None, device=torch.device("cpu"))
        sv = Supervisor()
        self.sched = ModelScheduler(
            model,  # type: ignore[arg-type]
            observer=Quiet(),  # type: ignore[arg-type]
            outcomes=OutcomeRecorder(sv),
            runner=StageRunner(model, measure_memory=False),  # type: ignore[arg-type]
            clock=self.clock,
            supervisor=sv,
            engine=self.engine,  # type: ignore[arg-type]
        )

    def submit(self, task: str, tokens: int, priority: int = 0) -> Any:
        h = Gen(task)
        items, params, single = h.parse(tokens, {})
        return self.sched.submit(h, items, params, single=single, priority=priority)  # type: ignore[arg-type]

    def parked(self) -> list[str]:
        """Wait until the loop is inside its next step; the tasks of the rows that step runs."""
        assert self.engine.entered.acquire(timeout=WAIT)
        return sorted(self.engine.rows[rid]["task"] for rid in self.engine.running)

    def step(self) -> list[str]:
        """Release the parked step; the rows the next one runs."""
        self.engine.go.release()
        return self.parked()

    def finish(self) -> None:
        for _ in range(1000):
            self.engine.go.release()
        self.sched.close()


@pytest.fixture
def harness_factory():
    made: list[Harness] = []

    def make(**spec: Any) -> Harness:
        h = Harness(**spec)
        made.append(h)
        return h

    yield make
    for h in made:
        h.finish()


def test_a_bulk_row_that_ran_for_30_s_has_not_waited_and_still_pauses_then_ages_by_its_pause(
    harness_factory,
) -> None:
    h = harness_factory()
    bulk = h.submit("summarization", 1000, priority=1)
    assert h.parked() == ["summarization"]
    h.clock.now += 30.0  # it has run, not waited
    fast = h.submit("translation", 1000)
    assert h.step() == ["translation"]  # the bulk row paused at once
    seen = []
    for _ in range(4):
        h.clock.now += 0.6  # paused 0.6, 1.2, 1.8, 2.4 s
        seen.append(h.step())
    # It runs again once it has waited (paused) 2 s, though interactive work still runs: delayed, never starved.
    assert seen == [["translation"]] * 3 + [["summarization", "translation"]]
    assert not bulk.future.done() and not fast.future.done()


def test_a_smaller_shares_item_waits_exactly_hold_steps_while_a_larger_share_runs(harness_factory) -> None:
    h = harness_factory(task_share={"translation": 3, "summarization": 1})
    h.submit("translation", 1000)
    assert h.parked() == ["translation"]
    late = h.submit("summarization", 3)
    runs = [h.step() for _ in range(HOLD_STEPS + 1)]
    assert runs == [["translation"]] * HOLD_STEPS + [["summarization", "translation"]]
    for _ in range(3):
        h.step()
    assert late.future.result(WAIT) == {"tokens": 3}


def test_held_items_join_a_prefill_that_runs_anyway_as_many_as_it_has(harness_factory) -> None:
    h = harness_factory(task_share={"translation": 3, "summarization": 1})
    h.submit("translation", 1000)
    assert h.parked() == ["translation"]
    for _ in range(3):
        h.submit("summarization", 50)
    assert h.step() == ["translation"]  # held
    h.submit("translation", 50)  # a prefill runs for it: one held item joins it
    assert h.step() == ["summarization", "translation", "translation"]
    assert h.step() == ["summarization", "translation", "translation"]  # the rest wait on


def test_without_shares_nothing_is_held(harness_factory) -> None:
    h = harness_factory()
    h.submit("translation", 1000)
    assert h.parked() == ["translation"]
    h.submit("summarization", 3)
    assert h.step() == ["summarization", "translation"]
