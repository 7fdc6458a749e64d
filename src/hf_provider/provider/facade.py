"""Provider: the one Python API. Resolves model and task, admits the request, waits for its result.

provider = Provider.from_config("hfp.toml")
provider.run("t5", "summarization", "Long text ...", {"max_new_tokens": 40})
vectors = provider.embed("minilm", ["a sentence", "another"])

Model parameters always travel as one explicit mapping (`params`), never as keyword arguments: the provider's own
options (`priority`, `timeout`, a stream's sink) can then never be set from a request body. Every request has a
deadline: the server's `request_timeout_s`, shortened by the caller's `timeout`.
"""

from __future__ import annotations

import asyncio
import math
import queue
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from hf_provider.errors import (
    ConfigError,
    InvalidInput,
    ProviderError,
)
from hf_provider.hub.fetch import Fetcher, FetchPolicy
from hf_provider.lifecycle.controller import Lifecycle
from hf_provider.lifecycle.history import HistoryStore
from hf_provider.models.manager import ModelManager
from hf_provider.observability.tracing import TRACE, Tracing
from hf_provider.provider.admin import Admin
from hf_provider.provider.submission import Submission
from hf_provider.reporting.reporter import Reporter
from hf_provider.reporting.store import ErrorStore
from hf_provider.resilience.faults import FaultInjector
from hf_provider.resilience.supervisor import Supervisor
from hf_provider.scheduling.request import Request
from hf_provider.settings import Settings, load_settings
from hf_provider.spec import ModelSpec, check_fallbacks
from hf_provider.types import RESERVED_PARAMS, DeltaSink

if TYPE_CHECKING:
    pass

# Inputs this small are parsed (tokenized) inline: a thread hop costs more than the work. Larger ones go to a
# worker thread so an async server's event loop never tokenizes a big request.
_INLINE_PARSE_CHARS = 2048
Params = Mapping[str, Any] | None


class Answer(NamedTuple):
    """A request's result with what a server reports beside it."""

    result: Any
    tokens: int  # input tokens (OpenAI `usage`)
    served_by: str  # the model that computed it
    fallback_reason: str | None  # why a fallback computed it (resilience/fallback.py); None: the model asked
    revision: str | None = None  # the commit of the version that computed it (lifecycle/: swaps, canaries)


class Provider(Submission):
    def __init__(
        self,
        models: list[ModelSpec] | None = None,
        *,
        settings: Settings | None = None,
        observer: Any = None,
        allow_adhoc: bool = True,
        reporter: Reporter | None = None,
        locked: bool | None = None,
        lock_file: Path | str | None = None,
        history: HistoryStore | None = None,
    ) -> None:
        """`locked=True` loads exactly the commits and files of `lock_file` (default: the settings' lock_file,
        else ./hfp.lock), and refuses a Hub model asking a branch or tag the lock has no entry for."""
        self.settings = settings or load_settings()
        specs = list(models) if models is not None else list(self.settings.models)
        if models is None and not specs:
            from hf_provider.defaults import default_specs

            specs = (
                default_specs()
            )  # nothing configured: the built-in MiniLM, as `hfp serve` does (no network)
        if models is not None:  # settings check their own models when they load
            try:
                check_fallbacks(specs)
            except ValueError as e:
                raise ConfigError(str(e)) from e
        # model -> its fallbacks, tried in order when it refuses a request before queueing it
        self._fallbacks = {s.name: list(s.fallbacks) for s in specs if s.fallbacks}
        self.observer = observer
        self.supervisor = Supervisor(on_error=getattr(observer, "internal_error", None))
        if observer is not None and hasattr(observer, "supervisor"):
            observer.supervisor = self.supervisor  # its own loop reports through the same place
        rs = self.settings.reporting
        if reporter is None and rs.enabled:  # the Python API's reports live in memory (the server's on disk)
            reporter = Reporter(ErrorStore(None), retention_s=rs.retention, include_inputs=rs.include_inputs)
        self.reporter = reporter
        self.faults = FaultInjector.from_settings(self.settings.faults)  # TESTING ONLY
        policy = FetchPolicy.from_settings(self.settings)
        lock = Path(lock_file) if lock_file is not None else policy.lock_file
        policy = replace(
            policy,
            locked=policy.locked if locked is None else locked,
            lock_file=lock or (Path.cwd() / "hfp.lock"),
        )
        fetcher = Fetcher(policy)
        fetcher.check_locked(specs)  # a missing or stale entry stops the start, naming the models
        self.manager = ModelManager(
            specs,
            memory=self.settings.memory,
            observer=observer,
            allow_adhoc=allow_adhoc,
            supervisor=self.supervisor,
            reporter=reporter,
            faults=self.faults,
            fetcher=fetcher,
        )
        # What entry points (routes, CLI, Ray replicas) read and change about the models, as plain data.
        self.admin = Admin(self.manager, self._fallbacks, self.supervisor)
        if reporter is not None:
            reporter.names = self.manager.names
            if reporter.count is None and hasattr(observer, "error_reported"):
                reporter.count = observer.error_reported
            self.supervisor.on_exception(reporter.internal_failure)
            reporter.start(self.supervisor)
        # Swaps, rollbacks, canaries and the version history (in memory unless the server gives it a file).
        self.lifecycle = Lifecycle(self.manager, history, self.settings.versioning, faults=self.faults)
        # Event-loop lag measured by the server (server/loadshed.py): added to every estimated queue wait, since
        # a request's answer waits for the loop as well as for the model.
        self.loop_lag_s = 0.0
        # OpenTelemetry spans of every request when `[tracing] otlp_endpoint` is set (observability/tracing.py)
        self.tracing: Tracing | None = Tracing.from_settings(self.settings.tracing)

    @classmethod
    def from_config(cls, config: Path | str | Mapping[str, Any], **kwargs: Any) -> Provider:
        settings = load_settings(dict(config) if isinstance(config, Mapping) else config)
        return cls(settings=settings, **kwargs)

    # lifecycle --------------------------------------------------------------------------------------------------
    def load(self, name: str) -> dict[str, Any]:
        e = self.manager.get(name, force=True)  # an operator's load does not wait out a failed load's backoff
        assert e.model is not None
        return e.model.info()

    def unload(self, name: str) -> bool:
        return self.manager.unload(name)

    def add_task(self, name: str, task: str) -> None:
        self.admin.add_task(name, task)

    def loaded(self) -> list[dict[str, Any]]:
        return [d for d in self.admin.describe() if d["state"] == "ready"]

    def close(self) -> None:
        self.lifecycle.close()
        self.manager.close()
        if self.reporter is not None:
            self.reporter.close()
        if self.tracing is not None:
            self.tracing.shutdown()

    def errors(
        self, *, model: str | None = None, since: float | None = None, error_class: str | None = None
    ) -> list[dict[str, Any]]:
        """Error groups (reporting/), most recently seen first; empty when reporting is off."""
        if self.reporter is None:
            return []
        return self.reporter.groups(model=model, since=since, error_class=error_class)

    def report(
        self, exc: BaseException, *, model: str = "-", phase: str | None = None, **context: Any
    ) -> None:
        """Make the error report of a failure that no scheduler settled (once per exception object)."""
        if self.reporter is not None:
            self.reporter.report(exc, model=model, phase=phase, **context)

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # requests ---------------------------------------------------------------------------------------------------
    def deadline(self, timeout: float | None = None, since: float | None = None) -> float:
        """The absolute deadline (time.monotonic) of a request that started at `since` (default: now): the
        server's request_timeout_s, shortened by `timeout`. The server passes the request's arrival, so the
        time spent reading and parsing it counts too."""
        limit = self.settings.server.request_timeout_s
        if timeout is not None:
            if (
                isinstance(timeout, bool)
                or not isinstance(timeout, int | float)
                or not math.isfinite(timeout)
            ):
                raise InvalidInput(f"timeout must be a number of seconds, got {timeout!r}", param="timeout")
            if timeout <= 0:
                raise InvalidInput(f"timeout must be positive, got {timeout}", param="timeout")
            limit = min(limit, float(timeout))
        return (time.monotonic() if since is None else since) + limit

    def submit(
        self,
        model: str,
        task: str,
        inputs: Any,
        params: Params = None,
        *,
        priority: str = "interactive",
        timeout: float | None = None,
        deadline: float | None = None,
        sink: DeltaSink | None = None,
    ) -> Request:
        """Validate and queue one request; returns it (`.future` completes when it is settled). `sink` receives
        streamed text deltas and None at the end. Errors before the request is queued raise here. When the model
        refuses the request for a reason of its own health and has `fallbacks`, the first fallback that takes it
        serves it: the Request's `served_by` and `fallback_reason` say so."""
        if self.tracing is not None and TRACE.get() is None:  # a Python call: its caller's span is the parent
            with self.tracing.python_call():
                kw = {"priority": priority, "timeout": timeout, "deadline": deadline, "sink": sink}
                return self.submit(model, task, inputs, params, **kw)
        fallbacks = self._fallbacks.get(model)
        try:
            when = self.deadline(timeout) if deadline is None else deadline
            checked = _check_params(params)
            if not fallbacks:
                return self._submit(model, task, inputs, checked, priority, when, sink)
            return self._submit_chain(model, fallbacks, task, inputs, checked, priority, when, sink)
        except ProviderError as exc:
            # The error raised after a walk of the chain is the last fallback's: counted for that model.
            who = exc.model if fallbacks and exc.model in fallbacks else model
            self.record_refusal(who, task, exc, inputs)
            raise
        except Exception as exc:  # a bug or an injected fault before the queue: reported, then raised (500)
            self.report(exc, model=model, phase="parse", inputs=inputs)
            raise

    def run(
        self,
        model: str,
        task: str,
        inputs: Any,
        params: Params = None,
        *,
        priority: str = "interactive",
        timeout: float | None = None,
    ) -> Any:
        deadline = self.deadline(timeout)
        req = self.submit(model, task, inputs, params, priority=priority, deadline=deadline)
        try:
            return req.future.result(max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            req.expire(time.monotonic())
            return req.future.result()  # the deadline error, unless the result won the race
        except BaseException:  # KeyboardInterrupt while waiting: nobody wants the work any more
            req.cancel(time.monotonic(), "the waiting thread was interrupted")
            raise

    async def arun(
        self,
        model: str,
        task: str,
        inputs: Any,
        params: Params = None,
        *,
        priority: str = "interactive",
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> Any:
        answer = await self.arun_usage(
            model, task, inputs, params, priority=priority, timeout=timeout, deadline=deadline
        )
        return answer.result

    async def arun_usage(
        self,
        model: str,
        task: str,
        inputs: Any,
        params: Params = None,
        *,
        priority: str = "interactive",
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> Answer:
        """Like arun, also returning the number of input tokens (for OpenAI `usage`) and the model that served
        the request (a fallback, and why, when the model refused it). Cancelling the awaiting
        task cancels the request: queued items leave the queue, a running generation row stops. `deadline`
        (time.monotonic) replaces `timeout` when given."""
        deadline = self.deadline(timeout) if deadline is None else deadline
        req = await self._asubmit(model, task, inputs, params, priority, deadline, None)
        loop = asyncio.get_running_loop()
        waiter = asyncio.wrap_future(req.future, loop=loop)
        # A timer callback instead of asyncio.wait_for, which wraps every request in an extra Task (measurable
        # per request on small CPUs).
        timer = loop.call_later(max(0.0, deadline - time.monotonic()), _expire, req)
        try:
            return Answer(await waiter, req.tokens, req.served_by, req.fallback_reason, req.revision)
        except asyncio.CancelledError:
            req.cancel(time.monotonic())
            raise
        finally:
            timer.cancel()

    async def _asubmit(
        self,
        model: str,
        task: str,
        inputs: Any,
        params: Params,
        priority: str,
        deadline: float,
        sink: DeltaSink | None,
    ) -> Request:
        # Small inputs of a ready model are parsed inline; a load (seconds) must never block the event loop.
        args = (model, task, inputs, params)
        kw = {"priority": priority, "deadline": deadline, "sink": sink}
        # A fallback may serve it too, so the whole chain must be ready.
        ready = self.manager.is_ready
        if (
            _size(inputs) <= _INLINE_PARSE_CHARS
            and ready(model)
            and all(map(ready, self._fallbacks.get(model, ())))
        ):
            return self.submit(*args, **kw)
        pending = asyncio.ensure_future(asyncio.to_thread(self.submit, *args, **kw))
        try:
            return await asyncio.shield(pending)
        except asyncio.CancelledError:
            # The caller left while its model loaded: the thread still queues the request, so cancel it then.
            pending.add_done_callback(_cancel_orphan)
            raise

    def embed(
        self, model: str, texts: list[str] | str, params: Params = None, *, timeout: float | None = None
    ) -> list[Any]:
        """One float32 numpy vector per text (as sentence-transformers' `encode` gives them)."""
        return self.run(
            model, "embeddings", [texts] if isinstance(texts, str) else texts, params, timeout=timeout
        )

    def stream(
        self,
        model: str,
        task: str,
        prompt: str,
        params: Params = None,
        *,
        priority: str = "interactive",
        timeout: float | None = None,
    ) -> Iterator[str]:
        """Text deltas as they are generated; an error of the request (DeadlineExceeded included) is raised at
        the end. Closing the iterator early cancels the generation."""
        deltas: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        deadline = self.deadline(timeout)
        req = self.submit(model, task, prompt, params, priority=priority, deadline=deadline, sink=deltas.put)
        try:
            while True:
                try:
                    delta = deltas.get(timeout=max(0.001, deadline - time.monotonic()))
                except queue.Empty:
                    req.expire(time.monotonic())  # settlement closes the sink: the None follows
                    continue
                if delta is None:
                    break
                yield delta
            req.future.result()
        finally:
            req.cancel(time.monotonic(), "the stream was closed early")  # a no-op once settled

    async def astream(
        self,
        model: str,
        task: str,
        prompt: str,
        params: Params = None,
        *,
        priority: str = "interactive",
        timeout: float | None = None,
    ) -> AsyncIterator[str]:
        stream = await self.open_stream(model, task, prompt, params, priority=priority, timeout=timeout)
        try:
            async for delta in stream:
                yield delta
        finally:
            stream.close()

    async def open_stream(
        self,
        model: str,
        task: str,
        prompt: str,
        params: Params = None,
        *,
        priority: str = "interactive",
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> TextStream:
        """Validate and queue a streamed generation. Errors in the request (unknown model, bad parameters) raise
        here, before any delta, so a server can still answer them with a status code."""
        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue[str | None] = asyncio.Queue()

        def sink(d: str | None) -> None:
            # Raises RuntimeError once the loop is closed: the request's guard then fails this request only.
            loop.call_soon_threadsafe(deltas.put_nowait, d)

        deadline = self.deadline(timeout) if deadline is None else deadline
        req = await self._asubmit(model, task, prompt, params, priority, deadline, sink)
        timer = loop.call_later(max(0.0, deadline - time.monotonic()), _expire, req)
        return TextStream(req, deltas, timer)


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


def _cancel_orphan(done: asyncio.Future[Request]) -> None:
    if not done.cancelled() and done.exception() is None:
        done.result().cancel(time.monotonic(), "the caller went away while the model loaded")


def _expire(req: Request) -> None:
    req.expire(time.monotonic())


def _check_params(params: Params) -> Mapping[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InvalidInput(
            f"parameters must be an object (a mapping of names to values), got {type(params).__name__}",
            param="parameters",
        )
    for name in params:
        if name in RESERVED_PARAMS:
            hint = {
                "priority": " (send the header X-Priority, or priority= in Python)",
                "timeout": " (send the header X-Request-Timeout, or timeout= in Python)",
            }.get(name, "")
            raise InvalidInput(
                f"parameter {name!r} is reserved for the provider and cannot be set in a request's "
                f"parameters{hint}",
                param=name,
            )
    return params


def _size(inputs: Any) -> int:
    if isinstance(inputs, str):
        return len(inputs)
    if isinstance(inputs, list):
        return sum(len(x) if isinstance(x, str) else 256 for x in inputs)
    return 256
