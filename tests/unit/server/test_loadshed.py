"""Loop-lag shedding: the lag estimate (pure) and the middleware's 429 before the body is read."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from hf_provider.server.loadshed import JITTER_S, LoopLag, ShedOnLoopLag


class _Provider(SimpleNamespace):
    queued = 5

    @property
    def admin(self) -> SimpleNamespace:
        return SimpleNamespace(queued_items=lambda: self.queued)

    def refuse(self, model: str, task: str, exc: BaseException, inputs: Any = None) -> None:
        self.recorded.append((model, task, type(exc).__name__))


def test_lag_rises_at_once_decays_gradually_and_ignores_jitter() -> None:
    p = _Provider(loop_lag_s=0.0, recorded=[])
    lag = LoopLag(p)  # type: ignore[arg-type]
    assert lag.observe(JITTER_S / 2) == 0.0
    assert lag.observe(0.8) == 0.8 and p.loop_lag_s == 0.8
    assert 0.0 < lag.observe(0.0) < 0.8
    for _ in range(50):
        lag.observe(0.0)
    assert lag.lag_s < 0.001


def _call(app: Any, path: str, method: str = "POST") -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        raise AssertionError("the body must not be read when shedding")

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "path": path, "method": method}, receive, send))
    return sent


def test_middleware_sheds_inference_only_while_lagging() -> None:
    p = _Provider(loop_lag_s=0.0, recorded=[])
    monitor = LoopLag(p)  # type: ignore[arg-type]
    passed: list[str] = []

    async def inner(scope: dict, receive: Any, send: Any) -> None:
        passed.append(scope["path"])

    app = ShedOnLoopLag(inner, monitor, limit_s=0.5)
    assert _call(app, "/v1/embeddings") == [] and passed == ["/v1/embeddings"]
    monitor.observe(0.9)
    sent = _call(app, "/v1/embeddings")
    assert sent[0]["status"] == 429 and (b"retry-after", b"1") in sent[0]["headers"]
    assert b'"code":"overloaded"' in sent[1]["body"]
    assert p.recorded == [("-", "embeddings", "Overloaded")]  # one refusal, recorded as the Provider's are
    for path, method in (("/healthz", "GET"), ("/v1/admin/models", "POST"), ("/v1/models", "GET")):
        _call(app, path, method)
    assert passed[1:] == ["/healthz", "/v1/admin/models", "/v1/models"]
    p.queued = 0  # lagging with nothing queued: refusing would only idle the models
    assert _call(app, "/v1/embeddings") == [] and passed[-1] == "/v1/embeddings"


def test_the_lag_probe_records_each_firing_with_its_time_and_serves_those_since_a_time() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from hf_provider.server.loadshed import LagProbe
    from hf_provider.server.routes import looplag

    probe = LagProbe(0.001)

    async def a_few_firings() -> None:
        probe.start()
        try:
            await asyncio.wait_for(_until(lambda: len(probe.samples) >= 3), 10)
        finally:
            await probe.stop()

    asyncio.run(a_few_firings())
    assert all(late >= 0.0 for _, late in probe.samples)
    times = [t for t, _ in probe.samples]
    assert times == sorted(times)
    probe.samples.clear()
    probe.samples.extend([(1.0, 0.002), (2.0, 0.012), (3.0, 0.0)])
    assert probe.since(2.0) == [(2.0, 0.012), (3.0, 0.0)]

    app = FastAPI()
    app.state.lag_probe = probe
    app.include_router(looplag.router)
    body = TestClient(app).get("/v1/admin/loop-lag", params={"since": 2.0}).json()
    assert body["samples"] == [[2.0, 12.0], [3.0, 0.0]] and body["interval_ms"] == 1.0
    assert body["now"] > 0


async def _until(done: Any) -> None:
    while not done():
        await asyncio.sleep(0)
