"""A pipeline run whose last step streams: its text deltas as they are generated, then the run's result."""

from __future__ import annotations

import asyncio

from hf_provider.pipelines.run import Result


class PipelineStream:
    """Async iteration yields the last step's deltas (earlier steps have finished by the first one); `result`
    holds the run's Result once iteration has ended. An error of any step is raised by the iteration (the
    deadline's DeadlineExceeded included). `close()` cancels whatever is still running."""

    def __init__(self, task: asyncio.Task[Result], deltas: asyncio.Queue[str | None]) -> None:
        self._task = task
        self._deltas = deltas
        self._peeked: list[str | None] = []
        self.result: Result | None = None
        task.add_done_callback(lambda _: deltas.put_nowait(None))

    @property
    def done(self) -> bool:
        return self._task.done()

    async def first(self) -> None:
        """Wait for the first delta or the end: lets a server answer an error met before any text (a failed
        step, the deadline) with its status code."""
        if not self._peeked:
            self._peeked.append(await self._deltas.get())
        if self._task.done() and not self._task.cancelled() and self._task.exception() is not None:
            raise self._task.exception()  # type: ignore[misc]

    def __aiter__(self) -> PipelineStream:
        return self

    async def __anext__(self) -> str:
        delta = self._peeked.pop() if self._peeked else await self._deltas.get()
        if delta is None:
            self.result = await self._task
            raise StopAsyncIteration
        return delta

    def close(self) -> None:
        if not self._task.done():
            self._task.cancel()  # the run cancels its running step (pipelines/run.py)

    async def aclose(self) -> None:
        """Close and wait until the run has cancelled its steps."""
        self.close()
        await asyncio.gather(self._task, return_exceptions=True)
