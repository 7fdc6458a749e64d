"""How a caller waits for a request: a stream's deltas (`TextStream`) and the cancellation of a request whose
caller left or whose deadline passed."""

from __future__ import annotations

import asyncio
import time
from typing import Any, NamedTuple

from hf_provider.scheduling.request import Request


class Answer(NamedTuple):
    """A request's result with what a server reports beside it."""

    result: Any
    tokens: int  # input tokens (OpenAI `usage`)
    served_by: str  # the model that computed it
    fallback_reason: str | None  # why a fallback computed it (resilience/fallback.py); None: the model asked
    revision: str | None = None  # the commit of the version that computed it (lifecycle/: swaps, canaries)


class TextStream:
    """The text deltas of one streamed generation; `result` holds the final output (finish_reason, token counts)
    once iteration has ended. An error of the request is raised by the iteration (DeadlineExceeded when the
    deadline stopped it). `close()` cancels a generation that is still running."""

    def __init__(
        self, request: Request, deltas: asyncio.Queue[str | None], timer: asyncio.TimerHandle
    ) -> None:
        self.request = request
        self._deltas = deltas
        self._timer = timer
        self._peeked: list[str | None] = []
        self.result: dict[str, Any] | None = None

    async def first(self) -> None:
        """Wait for the first delta (or the end): lets a server answer an early error with a status code."""
        if not self._peeked:
            self._peeked.append(await self._deltas.get())

    def __aiter__(self) -> TextStream:
        return self

    async def __anext__(self) -> str:
        delta = self._peeked.pop() if self._peeked else await self._deltas.get()
        if delta is None:
            self._timer.cancel()
            self.result = await asyncio.wrap_future(self.request.future)
            raise StopAsyncIteration
        return delta

    def close(self) -> None:
        self._timer.cancel()
        self.request.cancel(time.monotonic(), "the stream was closed early")


def cancel_orphan(done: asyncio.Future[Request]) -> None:
    if not done.cancelled() and done.exception() is None:
        done.result().cancel(time.monotonic(), "the caller went away while the model loaded")


def expire(req: Request) -> None:
    req.expire(time.monotonic())
