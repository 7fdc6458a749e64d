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
from typing import Any

from hf_provider.errors import ConfigError, InvalidInput
from hf_provider.hub.fetch import Fetcher, FetchPolicy
from hf_provider.lifecycle.controller import Lifecycle
from hf_provider.lifecycle.history import VersionHistory
from hf_provider.models.manager import ModelManager
from hf_provider.observability.outcomes import Recorder, observer_listener
from hf_provider.observability.tracing import TRACE, Tracing, trace_outcome
from hf_provider.pipelines import Pipelines, PipelineStream
from hf_provider.provider.admin import Admin
from hf_provider.provider.params import Params, check_params, input_size
from hf_provider.provider.streams import Answer, TextStream, cancel_orphan, expire
from hf_provider.provider.submission import Submitter
from hf_provider.reporting.reporter import Reporter
from hf_provider.reporting.store import ErrorStore
from hf_provider.resilience.faults import FaultInjector
from hf_provider.resilience.supervisor import Supervisor
from hf_provider.scheduling.request import Request
from hf_provider.settings import Settings, load_settings
from hf_provider.spec import ModelSpec, check_fallbacks
from hf_provider.types import DeltaSink

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
        reporter: Reporter | None = None,
        locked: bool | None = None,
        lock_file: Path | str | None = None,
        history: VersionHistory | None = None,
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
        self.observer = observer
        self.supervisor = Supervisor(on_error=getattr(observer, "internal_error", None))
        if observer is not None and hasattr(observer, "supervisor"):
            observer.supervisor = self.supervisor  # its own loop reports through the same place
        rs = self.settings.reporting
        if reporter is None and rs.enabled:  # the Python API's reports live in memory (the server's on disk)
            reporter = Reporter(
                ErrorStore(None),
                retention_s=rs.retention,
                include_inputs=rs.include_inputs,
                max_groups=rs.max_groups,
            )
        self.reporter = reporter
        # The one recorder of request outcomes (observability/outcomes.py): metrics and history, error reports
        # and traces listen here; each scheduler's own recorder passes its records on to it.
        self.outcomes = Recorder(self.supervisor)
        if (listener := observer_listener(observer)) is not None:
            self.outcomes.listen("observer", listener)
        if reporter is not None:
            self.outcomes.listen("reporter", reporter.outcome)
        self.outcomes.listen("tracing", trace_outcome)
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
            outcomes=self.outcomes,
            faults=self.faults,
            fetcher=fetcher,
            media=self.settings.media,
        )
        fallbacks = {s.name: list(s.fallbacks) for s in specs if s.fallbacks}
        self.submitter = Submitter(
            self.manager, self.outcomes, fallbacks=fallbacks, faults=self.faults, observer=observer
        )
        # What entry points (routes, CLI, Ray replicas) read and change about the models, as plain data.
        self.admin = Admin(self.manager, fallbacks, self.supervisor)
        if reporter is not None:
            reporter.known_models = self.manager.names
            if reporter.count is None and hasattr(observer, "error_reported"):
                reporter.count = observer.error_reported
            if reporter.count_overflow is None and hasattr(observer, "error_groups_folded"):
                reporter.count_overflow = observer.error_groups_folded
            self.supervisor.on_exception(reporter.internal_failure)
            reporter.start(self.supervisor)
        # Swaps, rollbacks, canaries and the version history (in memory unless the server gives it a file).
        self.lifecycle = Lifecycle(self.manager, history, self.settings.versioning, faults=self.faults)
        # OpenTelemetry spans of every request when `[tracing] otlp_endpoint` is set (observability/tracing.py)
        self.tracing: Tracing | None = Tracing.from_settings(self.settings.tracing)
        # `[[pipelines]]` checked now (ConfigError naming pipeline, step, field); steps run through our request API
        done, models = getattr(observer, "pipeline_done", None), {s.name: s for s in specs}
        pipes = Pipelines(list(self.settings.pipelines), models, self, deadline=self.deadline, on_done=done)
        self.pipelines, pipes.tracing = pipes, lambda: self.tracing

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
        """The error report of a failure that is no request's (a model's load at start); a request's failure
        is reported from its outcome (`refuse`, or its settlement)."""
        if self.reporter is not None:
            self.reporter.report(exc, model=model, phase=phase, **context)

    def refuse(self, model: str, task: str, exc: BaseException, inputs: Any = None) -> None:
        """Record a request that ended before it reached the Provider's queues: the one call a server makes for
        what it refuses itself (a body that is not JSON, a bad header, load shedding at the door)."""
        self.submitter.refuse(model, task, exc, inputs)

    @property
    def loop_lag_s(self) -> float:
        """Event-loop lag measured by the server (server/loadshed.py): added to every estimated queue wait,
        since a request's answer waits for the loop as well as for the model."""
        return self.submitter.loop_lag_s

    @loop_lag_s.setter
    def loop_lag_s(self, value: float) -> None:
        self.submitter.loop_lag_s = value

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # pipelines: `params` is {step: {name: value}}; return_steps=, priority=, timeout= as in Pipelines.arun -----
    def pipeline(self, name: str, inputs: Any, params: Params = None, **kw: Any) -> Any:
        """Run a configured pipeline: its output (with return_steps=True, every step's too)."""
        return self.pipelines.run(name, inputs, params, **kw)

    async def apipeline(self, name: str, inputs: Any, params: Params = None, **kw: Any) -> Any:
        return await self.pipelines.arun(name, inputs, params, **kw)

    async def pipeline_stream(
        self, name: str, inputs: Any, params: Params = None, **kw: Any
    ) -> PipelineStream:
        """The last step's text deltas as it generates them (earlier steps done), then `.result`."""
        return await self.pipelines.open_stream(name, inputs, params, **kw)

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

    def _deadline_or_refuse(self, model: str, task: str, inputs: Any, timeout: float | None) -> float:
        try:
            return self.deadline(timeout)
        except Exception as exc:  # a bad timeout: the request's end, recorded like any refusal
            self.submitter.refuse(model, task, exc, inputs)
            raise

    def submit(
        self,
        model: str,
        task: str,
        inputs: Any,
        params: Params = None,
        *,
        priority: str | None = None,
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
        try:
            when = self.deadline(timeout) if deadline is None else deadline
            checked = check_params(params)
        except Exception as exc:
            self.submitter.refuse(model, task, exc, inputs)
            raise
        return self.submitter.submit(model, task, inputs, checked, priority, when, sink)

    def run(
        self,
        model: str,
        task: str,
        inputs: Any,
        params: Params = None,
        *,
        priority: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        deadline = self._deadline_or_refuse(model, task, inputs, timeout)
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
        priority: str | None = None,
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
        priority: str | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> Answer:
        """Like arun, also returning the number of input tokens (for OpenAI `usage`) and the model that served
        the request (a fallback, and why, when the model refused it). Cancelling the awaiting
        task cancels the request: queued items leave the queue, a running generation row stops. `deadline`
        (time.monotonic) replaces `timeout` when given."""
        deadline = self._deadline_or_refuse(model, task, inputs, timeout) if deadline is None else deadline
        req = await self._asubmit(model, task, inputs, params, priority, deadline, None)
        loop = asyncio.get_running_loop()
        waiter = asyncio.wrap_future(req.future, loop=loop)
        # A timer callback instead of asyncio.wait_for, which wraps every request in an extra Task (measurable
        # per request on small CPUs).
        timer = loop.call_later(max(0.0, deadline - time.monotonic()), expire, req)
        try:
            return Answer(await waiter, req.input_tokens, req.served_by, req.fallback_reason, req.revision)
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
        priority: str | None,
        deadline: float,
        sink: DeltaSink | None,
    ) -> Request:
        # Small inputs of a ready model are parsed inline; a load (seconds) must never block the event loop.
        args = (model, task, inputs, params)
        kw = {"priority": priority, "deadline": deadline, "sink": sink}
        # A fallback may serve it too, so the whole chain must be ready.
        ready = self.manager.is_ready
        if (
            input_size(inputs) <= _INLINE_PARSE_CHARS
            and ready(model)
            and all(map(ready, self.submitter.fallbacks.get(model, ())))
        ):
            return self.submit(*args, **kw)
        pending = asyncio.ensure_future(asyncio.to_thread(self.submit, *args, **kw))
        try:
            return await asyncio.shield(pending)
        except asyncio.CancelledError:
            # The caller left while its model loaded: the thread still queues the request, so cancel it then.
            pending.add_done_callback(cancel_orphan)
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
        priority: str | None = None,
        timeout: float | None = None,
    ) -> Iterator[str]:
        """Text deltas as they are generated; an error of the request (DeadlineExceeded included) is raised at
        the end. Closing the iterator early cancels the generation."""
        deltas: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        deadline = self._deadline_or_refuse(model, task, prompt, timeout)
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
        priority: str | None = None,
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
        priority: str | None = None,
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

        deadline = self._deadline_or_refuse(model, task, prompt, timeout) if deadline is None else deadline
        req = await self._asubmit(model, task, prompt, params, priority, deadline, sink)
        timer = loop.call_later(max(0.0, deadline - time.monotonic()), expire, req)
        return TextStream(req, deltas, timer)
