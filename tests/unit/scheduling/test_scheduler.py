"""ModelScheduler failure paths with a fake clock and fake handlers: cancellation while queued and while running,
deadlines, callbacks that raise, admission by estimated wait, and exactly-once settlement under races.

No test sleeps: threads are coordinated with events (a gate the forward pass waits on), time is a fake clock.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from hf_provider.errors import Cancelled, DeadlineExceeded
from hf_provider.observability.outcomes import Recorder as OutcomeRecorder
from hf_provider.resilience.supervisor import Supervisor
from hf_provider.scheduling.batcher import ModelScheduler
from hf_provider.scheduling.worker import StageRunner
from hf_provider.spec import BatchingSpec
from hf_provider.types import Item, Outcome, RowControl

WAIT = 10.0  # generous bound on waiting for another thread; never a sleep


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Echo:
    """An encoder-like handler: doubles each input. `gate` (when set) holds the forward pass until released."""

    task = "embeddings"
    streaming = False
    generative = False

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.entered = threading.Event()
        self.gate: threading.Event | None = None

    def parse(self, inputs: Any, params: Mapping[str, Any]) -> tuple[list[Item], dict[str, Any], bool]:
        single = not isinstance(inputs, list)
        return [Item(x, 1) for x in ([inputs] if single else inputs)], dict(params), single

    def batch_key(self, params: Mapping[str, Any]) -> Any:
        return ()

    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any:
        return [i.data for i in items]

    def forward(self, batch: Any, params: Mapping[str, Any], control: RowControl | None = None) -> Any:
        self.seen.extend(batch)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT)
        return [x * 2 for x in batch]

    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        return outputs


class Prepared(Echo):
    """Echo that signals when a batch of 8 items has been preprocessed (taken off the queue by the collector)."""

    def __init__(self) -> None:
        super().__init__()
        self.prepared = threading.Event()

    def preprocess(self, items: list[Item], params: Mapping[str, Any]) -> Any:
        if len(items) == 8:
            self.prepared.set()
        return super().preprocess(items, params)


class Steps:
    """A generation-like handler: each row emits one delta per step until its stop reason or `steps`; the test
    releases steps one at a time, so it can cancel a row between two of them."""

    task = "text-generation"
    streaming = True
    generative = True

    def __init__(self, steps: int = 50) -> None:
        self.steps = steps
        self.step_go = threading.Semaphore(0)
        self.step_done = threading.Semaphore(0)
        self.emitted: list[list[str]] = []

    parse = Echo.parse
    batch_key = Echo.batch_key
    preprocess = Echo.preprocess

    def forward(self, batch: Any, params: Mapping[str, Any], control: RowControl | None = None) -> Any:
        assert control is not None
        live = [True] * len(batch)
        reasons: list[str] = ["length"] * len(batch)
        self.emitted = [[] for _ in batch]
        for step in range(self.steps):
            assert self.step_go.acquire(timeout=WAIT)
            control.generated([i for i, on in enumerate(live) if on])
            for i in range(len(batch)):
                if live[i] and (why := control.stop_reason(i)) is not None:
                    live[i], reasons[i] = False, why
                if live[i]:
                    self.emitted[i].append(f"t{step}")
                    control.emit(i, f"t{step}")
            self.step_done.release()
            if not any(live):
                break
        return [{"text": "".join(e), "finish_reason": r} for e, r in zip(self.emitted, reasons, strict=True)]

    def postprocess(self, batch: Any, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        return outputs


class Recorder:
    """Observer that records outcomes and generated tokens; optionally raises from its hooks."""

    def __init__(self, raise_in: set[str] | None = None) -> None:
        self.outcomes: list[tuple[str, str | None]] = []
        self.tokens = 0
        self.raise_in = raise_in or set()
        self.lock = threading.Lock()

    def _maybe_raise(self, hook: str) -> None:
        if hook in self.raise_in:
            raise RuntimeError(f"{hook} hook is broken")

    def request_done(self, model, task, revision, outcome, latency_s, items, tokens, error_type=None) -> None:
        with self.lock:
            self.outcomes.append((outcome, error_type))
        self._maybe_raise("request_done")

    def batch_done(self, *a: Any, **k: Any) -> None:
        self._maybe_raise("batch_done")

    def queue_depth(self, *a: Any) -> None:
        self._maybe_raise("queue_depth")

    def tokens_generated(self, model: str, task: str, n: int) -> None:
        with self.lock:
            self.tokens += n

    def model_loaded(self, *a: Any) -> None: ...

    def model_unloaded(self, *a: Any) -> None: ...


def make(
    handler: Any = None, *, clock: Clock | None = None, observer: Any = None, **batching: Any
) -> tuple[ModelScheduler, Any, Recorder, Supervisor]:
    spec = SimpleNamespace(batching=BatchingSpec(**{"max_wait_ms": 0, **batching}))
    model = SimpleNamespace(name="m", spec=spec, commit=None, device=torch.device("cpu"))
    obs = observer or Recorder()
    sv = Supervisor()
    outcomes = OutcomeRecorder(sv)  # the Provider's recorder; the fake observer listens as the real one does
    if hasattr(obs, "request_done"):
        outcomes.listen("observer", lambda o: obs.request_done(*_done_args(o)))
    sched = ModelScheduler(
        model,  # type: ignore[arg-type]
        observer=obs,
        outcomes=outcomes,
        runner=StageRunner(model, measure_memory=False),  # type: ignore[arg-type]
        clock=clock or Clock(),
        supervisor=sv,
    )
    return sched, handler or Echo(), obs, sv


def _done_args(o: Outcome) -> tuple[Any, ...]:
    error_type = None if o.error is None else type(o.error).__name__
    return (o.model, o.task, o.revision, o.outcome, o.latency_s, o.items, o.tokens, error_type)


def submit(sched: ModelScheduler, h: Any, inputs: Any, **kw: Any):
    items, params, single = h.parse(inputs, {})
    return sched.submit(h, items, params, single=single, **kw)


@pytest.fixture
def gated():
    sched, h, obs, sv = make()
    h.gate = threading.Event()
    yield sched, h, obs, sv
    h.gate.set()
    sched.close()


# -- cancellation -------------------------------------------------------------------------------------------------
def test_cancel_while_queued_leaves_the_queue_and_is_never_computed(gated) -> None:
    sched, h, obs, _ = gated
    first = submit(sched, h, 1)
    assert h.entered.wait(WAIT)  # the device is busy with `first`
    queued = submit(sched, h, [2, 3])
    keep = submit(sched, h, 4)
    assert sched.queue_depth == 3 and sched.in_flight == 3
    assert queued.cancel(sched.clock())
    assert sched.queue_depth == 1 and sched.in_flight == 2  # released at once, not when a batch would run
    with pytest.raises(Cancelled):
        queued.result(WAIT)
    h.gate.set()
    assert first.result(WAIT) == 2 and keep.result(WAIT) == 8
    assert 2 not in h.seen and 3 not in h.seen
    assert sorted(o for o, _ in obs.outcomes) == ["cancelled", "ok", "ok"]
    assert sched.in_flight == 0 and sched.queue_depth == 0


def test_cancel_while_running_stops_that_row_and_the_rest_of_the_batch_goes_on() -> None:
    sched, h, _, _ = make(Steps(steps=6), max_batch_size=4)
    got: list[list[str | None]] = [[], []]
    a = submit(sched, h, "a", sink=got[0].append)
    # Both rows share one batch: `b` is queued before the first step of `a` is released... unless `a` already
    # left alone, so wait for the collector to take a batch and check how many rows it holds.
    b = submit(sched, h, "b", sink=got[1].append)
    h.step_go.release()
    assert h.step_done.acquire(timeout=WAIT)
    if len(h.emitted) == 1:  # `a` started alone: finish it, then `b` runs alone; cancel b mid-way instead
        for _ in range(5):
            h.step_go.release()
        assert a.result(WAIT)["finish_reason"] == "length"
        a, got[0] = b, got[1]
        h.step_go.release()
        assert h.step_done.acquire(timeout=WAIT)
        survivor = None
    else:
        survivor = b
    assert a.cancel(sched.clock())
    for _ in range(5):
        h.step_go.release()
    with pytest.raises(Cancelled):
        a.result(WAIT)
    assert got[0][-1] is None and got[0][:-1] == ["t0"]  # the sink was closed once, right at cancellation
    if survivor is not None:
        out = survivor.result(WAIT)
        assert out["finish_reason"] == "length" and out["text"] == "t0t1t2t3t4t5"
        assert got[1] == ["t0", "t1", "t2", "t3", "t4", "t5", None]
    sched.close()
    assert sched.in_flight == 0


def test_generated_tokens_stop_counting_once_every_row_is_cancelled() -> None:
    sched, h, obs, _ = make(Steps(steps=100))
    req = submit(sched, h, "a", sink=lambda d: None)
    for _ in range(3):
        h.step_go.release()
        assert h.step_done.acquire(timeout=WAIT)
    assert obs.tokens == 3
    req.cancel(sched.clock())
    h.step_go.release()  # the next step sees the stop reason: no token is generated for the row
    assert h.step_done.acquire(timeout=WAIT)
    assert len(h.emitted[0]) == 3
    sched.close()  # returns: the forward pass ended although 97 steps were left
    assert obs.tokens <= 4


# -- deadlines --------------------------------------------------------------------------------------------------------
def test_request_past_its_deadline_is_dropped_before_its_forward_pass() -> None:
    clock = Clock()
    sched, h, obs, _ = make(clock=clock)
    h.gate = threading.Event()
    first = submit(sched, h, 1)
    assert h.entered.wait(WAIT)
    late = submit(sched, h, 5, deadline=clock.now + 1.0)
    ok = submit(sched, h, 6, deadline=clock.now + 100.0)
    clock.now += 2.0
    h.gate.set()
    assert first.result(WAIT) == 2 and ok.result(WAIT) == 12
    with pytest.raises(DeadlineExceeded, match="deadline"):
        late.result(WAIT)
    assert 5 not in h.seen
    assert ("timed_out", "DeadlineExceeded") in obs.outcomes
    sched.close()
    assert sched.in_flight == 0


def test_running_generation_row_stops_at_its_deadline_with_reason_timeout() -> None:
    clock = Clock()
    sched, h, obs, _ = make(Steps(steps=10), clock=clock)
    got: list[str | None] = []
    req = submit(sched, h, "a", sink=got.append, deadline=clock.now + 5)
    h.step_go.release()
    assert h.step_done.acquire(timeout=WAIT)
    clock.now += 6
    for _ in range(9):
        h.step_go.release()
    with pytest.raises(DeadlineExceeded):
        req.result(WAIT)
    assert got == ["t0", None]
    sched.close()
    assert [o for o, _ in obs.outcomes] == ["timed_out"]


# -- callbacks that raise -------------------------------------------------------------------------------------------
def test_a_sink_that_raises_fails_its_own_request_only() -> None:
    sched, h, obs, _ = make(Steps(steps=3), max_batch_size=4)

    def broken(delta: str | None) -> None:
        raise ValueError("the client's sink is broken")

    bad = submit(sched, h, "a", sink=broken)
    for _ in range(3):
        h.step_go.release()
    with pytest.raises(ValueError, match="sink is broken"):
        bad.result(WAIT)
    good = submit(sched, h, "b", sink=lambda d: None)
    for _ in range(3):
        h.step_go.release()
    assert good.result(WAIT)["text"] == "t0t1t2"
    sched.close()
    assert sorted(o for o, _ in obs.outcomes) == ["error", "ok"]


def test_observer_hooks_that_raise_never_stop_the_stage_threads() -> None:
    obs = Recorder(raise_in={"request_done", "batch_done", "queue_depth"})
    sched, h, _, sv = make(observer=obs)
    for i in range(20):
        assert submit(sched, h, i).result(WAIT) == 2 * i
    assert sched.in_flight == 0
    assert sv.errors.get("observer", 0) >= 20  # counted every time, never raised into the stage
    assert sv.down() == {}  # a hook failing is counted, but no worker is down
    sched.close()


def test_an_unexpected_error_in_a_stage_loop_is_counted_and_the_loop_goes_on() -> None:
    sched, h, _, sv = make()
    real = sched.completion.resolve
    calls = {"n": 0}

    def flaky(batch: Any, results: list[Any]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyError("bookkeeping bug")
        real(batch, results)

    sched.completion.resolve = flaky  # type: ignore[method-assign]
    lost = submit(sched, h, 1)
    with pytest.raises(KeyError):  # the batch's requests are failed with the real error, never left hanging
        lost.result(WAIT)
    assert submit(sched, h, 2).result(WAIT) == 4  # the post loop survived the bug
    assert sv.errors["post/m"] == 1
    assert sched.in_flight == 0
    sched.close()


# -- exactly-once settlement ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("rival", ["cancel", "expire"])
def test_completion_racing_cancellation_settles_exactly_once(rival: str) -> None:
    sched, h, obs, _ = make()
    for _ in range(300):
        go = threading.Barrier(2)
        req = submit(sched, h, 7)

        def race(r=req, b=go) -> None:
            b.wait()
            (r.cancel if rival == "cancel" else r.expire)(sched.clock())

        t = threading.Thread(target=race)
        t.start()
        go.wait()
        t.join(WAIT)
        exc = req.exception(WAIT)
        assert exc is None or isinstance(exc, Cancelled | DeadlineExceeded)
    assert len(obs.outcomes) == 300  # one outcome per request, whichever side won
    assert sched.in_flight == 0 and sched.queue_depth == 0
    sched.close()


def test_settlement_is_idempotent_across_every_path() -> None:
    sched, h, obs, _ = make()
    h.gate = threading.Event()
    submit(sched, h, 0)
    assert h.entered.wait(WAIT)
    req = submit(sched, h, 1)
    now = sched.clock()
    assert req.cancel(now) is True
    assert req.expire(now) is False and req.cancel(now) is False and req.fail(RuntimeError(), now) is False
    assert req.item_done(0, 2, now) is False
    h.gate.set()
    sched.close()
    assert [o for o, _ in obs.outcomes].count("cancelled") == 1
