"""The server span of each HTTP request (installed only when tracing is on: no layer at all when it is off).

The client's W3C `traceparent` (and `tracestate`) is the parent; every answer carries a `traceparent` naming this
server's span, so a client can find its request's trace. Attributes: method, path (never the query string or
body) and status code."""

from __future__ import annotations

from typing import Any

from hf_provider.observability.tracing import TRACE, UNSAMPLED, Trace, Tracing

_PROPAGATED = (b"traceparent", b"tracestate")


class TraceRequests:
    def __init__(self, app: Any, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t = self.tracing
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _PROPAGATED}
        parent = t.propagator.extract(carrier) if carrier else None
        method, path = scope.get("method", "GET"), scope.get("path", "")
        span = t.tracer.start_span(
            f"{method} {path}",
            context=parent,
            kind=t.server_kind,
            attributes={"http.request.method": method, "url.path": path},
        )
        sc = span.get_span_context()
        header = (
            b"traceparent",
            f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}".encode(),
        )
        traced = sc.trace_flags.sampled
        token = TRACE.set(Trace(t, t.in_context(span)) if traced else UNSAMPLED)

        async def send_traced(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
                span.set_attribute("http.response.status_code", message["status"])
                if message["status"] >= 500:
                    from opentelemetry.trace import Status, StatusCode

                    span.set_status(Status(StatusCode.ERROR))
            await send(message)

        try:
            await self.app(scope, receive, send_traced)
        except BaseException as e:
            span.set_attribute("error.type", type(e).__name__)
            raise
        finally:
            TRACE.reset(token)
            span.end()
