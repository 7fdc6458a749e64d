"""Event-loop lag: measured all the time, added to every admission estimate, and a hard brake at the door.

On a saturated server the event loop itself falls behind (parsing, serialising, waking waiters), and a request's
answer waits for the loop as well as for the model. The monitor measures how late a short timer fires; the lag is
added to each estimated queue wait (Provider.loop_lag_s), and past `shed_loop_lag_s` inference requests are refused
with 429 before their body is read, the cheapest answer there is, so health probes and rejections stay prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

from hf_provider.errors import Overloaded
from hf_provider.provider import Provider
from hf_provider.server.errors import error_body, refuse, send_error

INTERVAL_S = 0.05
DECAY = 0.7  # a spike is remembered for a few intervals: shedding reacts at once and lets go gradually
JITTER_S = 0.005  # timer overshoot of an idle loop (scheduling noise), not lag


class LateTimer:
    """A periodic asyncio timer that reports how late each firing was: `on_fire(when, late_s)` on the loop's
    clock (time.monotonic). The measuring half of LoopLag and LagProbe."""

    def __init__(self, interval_s: float, on_fire: Callable[[float, float], object], name: str) -> None:
        self.interval_s = interval_s
        self.on_fire = on_fire
        self.name = name
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(self.interval_s)
            now = loop.time()
            self.on_fire(now, now - t0 - self.interval_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class LoopLag:
    def __init__(self, provider: Provider, interval_s: float = INTERVAL_S) -> None:
        self.provider = provider
        self.interval_s = interval_s
        self.lag_s = 0.0
        self._timer = LateTimer(interval_s, lambda _when, late: self.observe(late), "hfp-loop-lag")

    def start(self) -> None:
        self._timer.start()

    async def stop(self) -> None:
        await self._timer.stop()

    def observe(self, lag_s: float) -> float:
        """Fold one measurement in (pure arithmetic; tests drive it directly)."""
        lag_s = lag_s if lag_s > JITTER_S else 0.0
        self.lag_s = max(lag_s, self.lag_s * DECAY)
        self.provider.loop_lag_s = self.lag_s
        return self.lag_s


class LagProbe:
    """How late a short periodic timer fires, each sample kept with when (the loop's clock, time.monotonic): the
    event loop's lag at a finer grain than the shedding monitor's. On with `[server] lag_probe_ms` (off by
    default) for benches: bench/swap.py reads the samples of each swap from GET /v1/admin/loop-lag."""

    def __init__(self, interval_s: float, keep: int = 1 << 16) -> None:
        self.interval_s = interval_s
        self.samples: deque[tuple[float, float]] = deque(maxlen=keep)  # (when it fired, how late in s)
        self._timer = LateTimer(
            interval_s, lambda when, late: self.samples.append((when, max(0.0, late))), "hfp-lag-probe"
        )

    def start(self) -> None:
        self._timer.start()

    async def stop(self) -> None:
        await self._timer.stop()

    def since(self, t: float) -> list[tuple[float, float]]:
        return [s for s in list(self.samples) if s[0] >= t]


class ShedOnLoopLag:
    """ASGI middleware: 429 for inference requests while the loop lags past `limit_s` and the models have work
    queued (admin and health requests always pass). With nothing queued, refusing would idle the models while
    the lag may come from answering refusals: a feedback loop that collapses throughput."""

    def __init__(self, app: Any, monitor: LoopLag, limit_s: float) -> None:
        self.app = app
        self.monitor = monitor
        self.limit_s = limit_s

    def queued(self) -> int:
        return self.monitor.provider.admin.queued_items()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and self.monitor.lag_s > self.limit_s
            and self.queued() > 0  # idle models: letting requests through is what brings the lag down
            and scope["method"] == "POST"
            and scope["path"].startswith(("/v1/", "/v2/"))  # /v2/rerank
            and not scope["path"].startswith("/v1/admin")
        ):
            message = f"the server is overloaded (event loop {self.monitor.lag_s * 1000:.0f} ms behind); retry shortly"
            refuse(
                self.monitor.provider,
                scope.get("state", {}),
                scope["path"],
                Overloaded(message, retry_after=1.0),
            )
            await send_error(
                send, 429, error_body(message, "rate_limit_error", "overloaded"), [(b"retry-after", b"1")]
            )
            return
        await self.app(scope, receive, send)
