"""Cancellation and deadlines through the Python API on a real (tiny, long-context) language model: asyncio
cancellation of `arun`, an `astream` abandoned under `asyncio.run`, a sync `stream` closed early, `timeout=`."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from hf_provider.errors import DeadlineExceeded
from hf_provider.provider import Provider
from hf_provider.settings import load_settings
from hf_provider.spec import ModelSpec
from hf_provider.testing.models import build_sized_gpt2

LONG = {"max_new_tokens": 3000}


class Tokens:
    """Observer counting generated tokens (the rest of the hooks are no-ops)."""

    def __init__(self) -> None:
        self.n = 0
        self.outcomes: list[str] = []
        self.lock = threading.Lock()

    def tokens_generated(self, model: str, task: str, n: int) -> None:
        with self.lock:
            self.n += n

    def request_done(self, model, task, revision, outcome, *a) -> None:
        self.outcomes.append(outcome)

    def batch_done(self, *a) -> None: ...

    def queue_depth(self, *a) -> None: ...

    def model_loaded(self, *a) -> None: ...

    def model_unloaded(self, *a) -> None: ...


@pytest.fixture(scope="module", params=["static", "continuous"])
def lm(tiny_models: dict[str, Path], request: pytest.FixtureRequest):
    """The same checks with static batching and with continuous batching (runtime/continuous) forced on."""
    path = build_sized_gpt2(tiny_models["decoder"].parent, 64, 2, positions=4096)
    obs = Tokens()
    settings = load_settings({"metrics_enabled": False})
    batching = {"generation": request.param, "max_batch_size": 4}
    with Provider(
        [ModelSpec(name="lm", source=str(path), device="cpu", batching=batching)],
        settings=settings,
        observer=obs,
    ) as p:
        p.run("lm", "text-generation", "warm", {"max_new_tokens": 2})
        yield p, obs


def _sched(p: Provider):
    return p.manager.get("lm").scheduler


def _settled(p: Provider) -> None:
    """Wait (bounded) until nothing is in flight and the device is idle: a cancelled row stops at the forward
    pass's next step, which may still generate the token of the step in progress."""
    sched = _sched(p)
    done = threading.Event()
    for _ in range(500):
        if (
            sched.in_flight == 0
            and not sched.pending.device_busy
            and not (sched.engine and sched.engine.busy)
        ):
            return
        done.wait(0.01)
    raise AssertionError(f"{sched.in_flight} requests still in flight")


def test_cancelling_the_awaiting_task_stops_the_running_generation(lm) -> None:
    p, obs = lm

    async def main() -> None:
        task = asyncio.create_task(p.arun("lm", "text-generation", "Once", LONG))
        while obs.n < 5:  # generating
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    _settled(p)
    stopped_at = obs.n
    assert p.run("lm", "text-generation", "again", {"max_new_tokens": 3})["completion_tokens"] == 3
    assert obs.n - stopped_at == 3  # only the new request generated anything
    assert "cancelled" in obs.outcomes


def test_astream_abandoned_under_asyncio_run_does_not_hurt_the_forward_thread(lm) -> None:
    p, _ = lm

    async def main() -> list[str]:
        got = []
        async for delta in p.astream("lm", "text-generation", "Once upon", LONG):
            got.append(delta)
            if len(got) == 2:
                break  # the generator is left for asyncio.run to close, with its loop about to close
        return got

    assert len(asyncio.run(main())) == 2
    _settled(p)
    assert p.run("lm", "text-generation", "still serving", {"max_new_tokens": 2})["completion_tokens"] == 2
    assert all(t.is_alive() for t in _sched(p)._threads)


def test_sync_stream_closed_early_cancels(lm) -> None:
    p, obs = lm
    stream = p.stream("lm", "text-generation", "Hello", LONG)
    assert next(stream) and next(stream)
    before = obs.n
    stream.close()
    _settled(p)
    assert obs.n - before < 100  # a few steps at most, not the 3000 asked for


def test_timeout_stops_a_running_generation(lm) -> None:
    p, obs = lm
    with pytest.raises(DeadlineExceeded, match="deadline"):
        p.run("lm", "text-generation", "Hello", LONG, timeout=0.2)
    _settled(p)
    with pytest.raises(DeadlineExceeded):
        list(p.stream("lm", "text-generation", "Hello", LONG, timeout=0.2))
    _settled(p)
    assert obs.outcomes.count("timed_out") >= 2
