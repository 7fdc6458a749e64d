"""Provider: the one Python API. Resolves model and task, admits the request, waits for its result.

provider = Provider.from_config("hfp.toml")
provider.run("t5", "summarization", "Long text ...")
vectors = provider.embed("minilm", ["a sentence", "another"])
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from hf_provider.errors import DeadlineExceeded, InvalidInput
from hf_provider.runtime.manager import ModelManager
from hf_provider.runtime.tasks.base import DeltaSink
from hf_provider.scheduling.queue import PRIORITIES
from hf_provider.settings import Settings, load_settings
from hf_provider.spec import ModelSpec

# Inputs this small are parsed (tokenized) inline: a thread hop costs more than the work. Larger ones go to a
# worker thread so an async server's event loop never tokenizes a big request.
_INLINE_PARSE_CHARS = 2048


class Provider:
    def __init__(
        self,
        models: list[ModelSpec] | None = None,
        *,
        settings: Settings | None = None,
        observer: Any = None,
        allow_adhoc: bool = True,
    ) -> None:
        self.settings = settings or load_settings()
        specs = list(models) if models is not None else list(self.settings.models)
        self.observer = observer
        self.manager = ModelManager(
            specs, memory=self.settings.memory, observer=observer, allow_adhoc=allow_adhoc
        )

    @classmethod
    def from_config(cls, config: Path | str | Mapping[str, Any], **kwargs: Any) -> Provider:
        settings = load_settings(dict(config) if isinstance(config, Mapping) else config)
        return cls(settings=settings, **kwargs)

    # lifecycle --------------------------------------------------------------------------------------------------
    def load(self, name: str) -> dict[str, Any]:
        e = self.manager.get(name)
        assert e.model is not None
        return e.model.info()

    def unload(self, name: str) -> bool:
        return self.manager.unload(name)

    def add_task(self, name: str, task: str) -> None:
        self.manager.add_task(name, task)

    def loaded(self) -> list[dict[str, Any]]:
        return [d for d in self.manager.describe() if d["state"] == "ready"]

    def close(self) -> None:
        self.manager.close()

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # requests ---------------------------------------------------------------------------------------------------
    def submit(
        self,
        model: str,
        task: str,
        inputs: Any,
        *,
        priority: str = "interactive",
        sink: DeltaSink | None = None,
        **params: Any,
    ) -> Future:
        """Validate and enqueue one request; returns its future. `sink` receives streamed text deltas."""
        if priority not in PRIORITIES:
            raise InvalidInput(
                f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}", param="priority"
            )
        # The lease keeps the model from eviction and keep-alive unloading until the request is queued.
        with self.manager.acquire(model) as e:
            handler = self.manager.handler(e, task)
            if sink is not None and not handler.streaming:
                raise InvalidInput(
                    f"task {task!r} does not stream; streaming is available for text-generation",
                    param="stream",
                )
            items, resolved, single = handler.parse(inputs, params)
            if sink is not None and not single:
                raise InvalidInput("streaming takes a single prompt", param="inputs")
            assert e.scheduler is not None
            fut = e.scheduler.submit(
                handler,
                items,
                resolved,
                single=single,
                priority=PRIORITIES[priority],
                sinks=[sink] if sink is not None else None,
            )
        name = e.spec.name
        fut.add_done_callback(lambda _: self.manager.touch(name))  # keep-alive idles from the request's end
        fut.prompt_tokens = sum(i.n_tokens for i in items)  # type: ignore[attr-defined]  # for usage reports
        return fut

    def _timeout(self, timeout: float | None) -> float:
        return self.settings.server.request_timeout_s if timeout is None else timeout

    def run(
        self,
        model: str,
        task: str,
        inputs: Any,
        *,
        priority: str = "interactive",
        timeout: float | None = None,
        **params: Any,
    ) -> Any:
        fut = self.submit(model, task, inputs, priority=priority, **params)
        try:
            return fut.result(self._timeout(timeout))
        except FutureTimeout:
            fut.cancel()
            raise self._deadline(model, task, timeout) from None

    async def arun(
        self,
        model: str,
        task: str,
        inputs: Any,
        *,
        priority: str = "interactive",
        timeout: float | None = None,
        **params: Any,
    ) -> Any:
        result, _ = await self.arun_usage(model, task, inputs, priority=priority, timeout=timeout, **params)
        return result

    async def arun_usage(
        self,
        model: str,
        task: str,
        inputs: Any,
        *,
        priority: str = "interactive",
        timeout: float | None = None,
        **params: Any,
    ) -> tuple[Any, int]:
        """Like arun, also returning the number of input tokens (for OpenAI `usage`)."""
        # Small inputs of a ready model are parsed inline; a load (seconds) must never block the event loop.
        if _size(inputs) <= _INLINE_PARSE_CHARS and self.manager.is_ready(model):
            fut = self.submit(model, task, inputs, priority=priority, **params)
        else:
            fut = await asyncio.to_thread(self.submit, model, task, inputs, priority=priority, **params)
        return await self._await(fut, model, task, timeout), fut.prompt_tokens  # type: ignore[attr-defined]

    async def _await(self, fut: Future, model: str, task: str, timeout: float | None) -> Any:
        """Await a scheduler future with a deadline. A timer callback instead of asyncio.wait_for, which wraps
        every request in an extra Task (measurable per request on small CPUs)."""
        loop = asyncio.get_running_loop()
        waiter = asyncio.wrap_future(fut, loop=loop)
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            waiter.cancel()  # also cancels `fut`, so a request still queued is dropped

        timer = loop.call_later(self._timeout(timeout), expire)
        try:
            return await waiter
        except asyncio.CancelledError:
            if expired:
                raise self._deadline(model, task, timeout) from None
            fut.cancel()  # the caller went away (client disconnected): drop the work if still queued
            raise
        finally:
            timer.cancel()

    def _deadline(self, model: str, task: str, timeout: float | None) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"{model}/{task} did not finish within {self._timeout(timeout)}s",
            model=model,
            task=task,
            retry_after=1.0,
        )

    def embed(self, model: str, texts: list[str] | str, **params: Any) -> list[list[float]]:
        return self.run(model, "embeddings", [texts] if isinstance(texts, str) else texts, **params)

    def stream(self, model: str, task: str, prompt: str, **params: Any) -> Iterator[str]:
        """Text deltas as they are generated; an error of the request is raised at the end."""
        deltas: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        fut = self.submit(model, task, prompt, sink=deltas.put, **params)
        while (delta := deltas.get(timeout=self._timeout(None))) is not None:
            yield delta
        fut.result(self._timeout(None))

    async def astream(self, model: str, task: str, prompt: str, **params: Any) -> AsyncIterator[str]:
        stream = await self.open_stream(model, task, prompt, **params)
        async for delta in stream:
            yield delta

    async def open_stream(
        self,
        model: str,
        task: str,
        prompt: str,
        *,
        priority: str = "interactive",
        timeout: float | None = None,
        **params: Any,
    ) -> TextStream:
        """Validate and queue a streamed generation. Errors in the request (unknown model, bad parameters) raise
        here, before any delta, so a server can still answer them with a status code."""
        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue[str | None] = asyncio.Queue()

        def sink(d: str | None) -> None:
            loop.call_soon_threadsafe(deltas.put_nowait, d)

        if self.manager.is_ready(model):
            fut = self.submit(model, task, prompt, priority=priority, sink=sink, **params)
        else:  # a load takes seconds: never on the event loop
            fut = await asyncio.to_thread(
                self.submit, model, task, prompt, priority=priority, sink=sink, **params
            )
        return TextStream(deltas, self._await(fut, model, task, timeout))


class TextStream:
    """The text deltas of one streamed generation; `result` holds the final output (finish_reason, token counts)
    once iteration has ended. An error of the request is raised by the iteration."""

    def __init__(self, deltas: asyncio.Queue[str | None], final: Any) -> None:
        self._deltas = deltas
        self._final = final
        self.result: dict[str, Any] | None = None

    def __aiter__(self) -> TextStream:
        return self

    async def __anext__(self) -> str:
        delta = await self._deltas.get()
        if delta is None:
            self.result = await self._final
            raise StopAsyncIteration
        return delta


def _size(inputs: Any) -> int:
    if isinstance(inputs, str):
        return len(inputs)
    if isinstance(inputs, list):
        return sum(len(x) if isinstance(x, str) else 256 for x in inputs)
    return 256
