"""OpenTelemetry traces of the request path, off unless `[tracing] otlp_endpoint` is set (the `tracing` extra).

What a traced request looks like (one trace per HTTP request; the client's W3C `traceparent` is its parent and the
answer's `traceparent` names the server span)::

    POST /v1/embeddings                 server/tracing.py: receive to the last byte sent (streams included)
      hfp.pipeline.step                 pipelines/run.py: one per step of a pipeline, its requests' spans under it
      hfp.parse                         provider: the handler's parse of the inputs into items
      hfp.request                       scheduling: submit to settlement; model, revision, task, outcome
        hfp.queue_wait                  submit to the batch that took it
        hfp.batch                       batch formed to answered; batch size, padded tokens
          hfp.preprocess / hfp.forward / hfp.postprocess
          (continuous batching: hfp.generate, from joining the running batch to the end, instead of hfp.batch)
        hfp.stream                      first streamed delta to the end

Spans of the scheduler are made at settlement from the times the scheduler keeps anyway (scheduling/request.py,
batcher.py): the stage threads never touch OpenTelemetry. Attributes are names, commits, counts and outcomes,
never inputs or outputs. With tracing off, the cost on the hot path is one context-variable read per request and
one `is None` check at settlement (bench/tracing.py measures it). The OpenTelemetry SDK is imported only when
tracing is on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hf_provider.context import TRACE
from hf_provider.settings.tracing import TracingSettings
from hf_provider.types import Outcome

# A settled scheduling.request.Request and a scheduling.queue.Batch, read by attribute: observability sits below
# the scheduler in the layers, so it names their types without importing them.
Request = Any
Batch = Any

log = logging.getLogger(__name__)
INSTALL_HINT = 'OTLP trace export needs the `tracing` extra: pip install "hf-provider[tracing]"'


class Tracing:
    """A tracer provider of our own (never the global one, so an embedding application keeps its own)."""

    def __init__(
        self,
        exporter: Any,
        *,
        service_name: str = "hf-provider",
        sample_ratio: float = 1.0,
        batch: bool = True,
    ) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace import SpanKind, set_span_in_context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}),
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        )
        # Batching exports off the request path; the simple processor (tests) exports as each span ends.
        self.provider.add_span_processor((BatchSpanProcessor if batch else SimpleSpanProcessor)(exporter))
        self.tracer = self.provider.get_tracer("hf_provider")
        self.propagator = TraceContextTextMapPropagator()
        self.server_kind = SpanKind.SERVER
        self.in_context: Callable[[Any], Any] = set_span_in_context
        # A settled request's spans are built on this thread, not on the stage thread that settled it: the
        # postprocess stage settles a whole batch in turn, and eight spans each would hold back the next batch.
        # Inline (no thread) with the simple processor, so a test reads its spans as soon as it has its answer.
        self._inline = not batch
        self._pending: queue.SimpleQueue[tuple[RequestTrace, Request, BaseException | None] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, s: TracingSettings) -> Tracing | None:
        if s.otlp_endpoint is None:
            return None
        try:
            if s.protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as e:
            raise ImportError(INSTALL_HINT) from e
        return cls(
            OTLPSpanExporter(endpoint=s.otlp_endpoint),
            service_name=s.service_name,
            sample_ratio=s.sample_ratio,
        )

    def settled(self, rt: RequestTrace, req: Request, error: BaseException | None) -> None:
        if self._inline:
            rt.finish(req, error)
            return
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="hfp-tracing", daemon=True)
                    self._thread.start()
        self._pending.put((rt, req, error))

    def _run(self) -> None:
        while (job := self._pending.get()) is not None:
            rt, req, error = job
            try:
                rt.finish(req, error)
            except Exception:  # a span that cannot be built never stops the next ones (rule 9)
                log.warning("building the spans of a %s request failed", req.model, exc_info=True)

    def flush(self, timeout_s: float = 10.0) -> None:
        """Build the spans of every request settled so far and export them."""
        if self._thread is not None:
            done = threading.Event()
            self._pending.put((_Marker(done), None, None))  # type: ignore[arg-type]
            done.wait(timeout_s)
        self.provider.force_flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        if self._thread is not None:
            self.flush()
            self._pending.put(None)
            self._thread.join(5)
        self.provider.shutdown()  # flushes what the batch processor holds

    @contextmanager
    def python_call(self) -> Iterator[None]:
        """A Provider call outside the server: the caller's current span (if any) is the parent."""
        from opentelemetry import context

        token = TRACE.set(Trace(self, context.get_current()))
        try:
            yield
        finally:
            TRACE.reset(token)


class Trace:
    """One traced HTTP request (or Python call): the context its spans hang from."""

    __slots__ = ("context", "tracing")

    def __init__(self, tracing: Tracing, context: Any) -> None:
        self.tracing = tracing
        self.context = context

    def parsed(self, started: float) -> None:
        """The handler's parse took from `started` (perf_counter) until now."""
        end = time.time_ns()
        start = end - int((time.perf_counter() - started) * 1e9)
        self.tracing.tracer.start_span("hfp.parse", context=self.context, start_time=start).end(end_time=end)

    def request(self, submitted: float) -> RequestTrace:
        return RequestTrace(self, submitted)

    def child(self, name: str, attributes: dict[str, Any]) -> tuple[Trace, Any]:
        """A live span under this trace's context (a pipeline's step) and the Trace its requests hang from; the
        caller ends the span."""
        span = self.tracing.tracer.start_span(name, context=self.context, attributes=attributes)
        return Trace(self.tracing, self.tracing.in_context(span)), span


class Unsampled(Trace):
    """An HTTP request the sampler left out: no spans, and the Provider must not start a trace of its own."""

    __slots__ = ()

    def __init__(self) -> None:
        pass

    def parsed(self, started: float) -> None:
        pass

    def request(self, submitted: float) -> None:  # type: ignore[override]
        return None

    def child(self, name: str, attributes: dict[str, Any]) -> tuple[Trace, Any]:
        return self, None


UNSAMPLED = Unsampled()


class RequestTrace:
    """What one Request's spans need, noted by the scheduler as it goes and turned into spans at settlement."""

    __slots__ = ("anchor", "anchor_ns", "batch_size", "first_delta", "stages", "started", "trace")

    def __init__(self, trace: Trace, submitted: float) -> None:
        self.trace = trace
        self.anchor = submitted  # the scheduler's clock at submit ...
        self.anchor_ns = time.time_ns()  # ... and the wall clock then: spans need epoch nanoseconds
        self.stages: tuple[float, float | None, float, dict[str, float], int] | None = None
        self.batch_size = 0
        self.first_delta: float | None = None
        self.started: float | None = None  # when a batch or the generation engine took it (monotonic)

    def running(self, now: float) -> None:
        if self.started is None:
            self.started = now

    def ns(self, t: float) -> int:
        return self.anchor_ns + int((t - self.anchor) * 1e9)

    def batch(self, batch: Batch, now: float) -> None:
        """The batch that answered (or failed) this request ended at `now` (scheduler clock)."""
        self.batch_size = batch.size
        self.stages = (batch.formed_at, batch.decided, now, dict(batch.timings), batch.padded_tokens)

    def wrap(
        self, sink: Callable[[str | None], None], clock: Callable[[], float]
    ) -> Callable[[str | None], None]:
        def traced(delta: str | None) -> None:
            if self.first_delta is None and delta is not None:
                self.first_delta = clock()
            sink(delta)

        return traced

    def settled(self, req: Request, error: BaseException | None) -> None:
        """Called once, at settlement: the spans are built on the tracing thread."""
        self.trace.tracing.settled(self, req, error)

    def finish(self, req: Request, error: BaseException | None) -> None:
        tracer = self.trace.tracing.tracer
        in_context = self.trace.tracing.in_context
        end = self.ns(req.settled_at if req.settled_at is not None else self.anchor)
        attrs: dict[str, Any] = {
            "hfp.model": req.model,
            "hfp.task": getattr(req.handler, "task", ""),
            "hfp.revision": req.revision or "",
            "hfp.outcome": req.outcome or "error",
            "hfp.items": len(req.items),
            "hfp.priority": req.priority,
        }
        if self.batch_size:
            attrs["hfp.batch_size"] = self.batch_size
        if req.fallback_reason is not None:
            attrs["hfp.fallback_reason"] = req.fallback_reason
        if error is not None:
            attrs["error.type"] = type(error).__name__
        root = tracer.start_span("hfp.request", context=self.trace.context, start_time=self.ns(self.anchor))
        root.set_attributes(attrs)
        if error is not None and req.outcome != "cancelled":
            from opentelemetry.trace import Status, StatusCode

            root.set_status(Status(StatusCode.ERROR, type(error).__name__))  # the class only: no message text
        ctx = in_context(root)
        if self.stages is not None:
            formed, decided, done, timings, tokens = self.stages
            _span(tracer, "hfp.queue_wait", ctx, self.ns(self.anchor), self.ns(formed))
            batch = tracer.start_span("hfp.batch", context=ctx, start_time=self.ns(formed))
            batch.set_attributes({"hfp.batch_size": self.batch_size, "hfp.batch_tokens": tokens})
            bctx = in_context(batch)
            pre_end = self.ns(formed) + int(timings.get("preprocess", 0.0) * 1e9)
            _span(tracer, "hfp.preprocess", bctx, self.ns(formed), pre_end)
            if "forward" in timings:
                fwd = self.ns(decided) if decided is not None else pre_end
                _span(tracer, "hfp.forward", bctx, fwd, fwd + int(timings["forward"] * 1e9))
            if "postprocess" in timings:
                post = self.ns(done)
                _span(tracer, "hfp.postprocess", bctx, post - int(timings["postprocess"] * 1e9), post)
            batch.end(end_time=self.ns(done))
        elif (
            self.started is not None
        ):  # taken, then no batch answered it: the continuous-batching engine's rows
            _span(tracer, "hfp.queue_wait", ctx, self.ns(self.anchor), self.ns(self.started))
            if getattr(req.handler, "generative", False):
                _span(tracer, "hfp.generate", ctx, self.ns(self.started), end)  # joined between two steps
        else:  # ended in the queue (cancelled, expired, refused)
            _span(tracer, "hfp.queue_wait", ctx, self.ns(self.anchor), end)
        if self.first_delta is not None:
            _span(tracer, "hfp.stream", ctx, self.ns(self.first_delta), end)
        root.end(end_time=end)


class _Marker:
    """Put in the queue by `flush`: sets its event when the jobs before it are done."""

    def __init__(self, done: threading.Event) -> None:
        self.done = done

    def finish(self, req: Any, error: Any) -> None:
        self.done.set()


def _span(tracer: Any, name: str, ctx: Any, start: int, end: int) -> None:
    tracer.start_span(name, context=ctx, start_time=start).end(end_time=max(start, end))


def trace_outcome(outcome: Outcome) -> None:
    """The tracing listener of the outcome recorder: a traced request's spans are built from its settlement."""
    req = outcome.request
    if req is not None and req.trace is not None:
        req.trace.settled(req, outcome.error)
