"""Span, trace-context and baggage helpers of ``iii_helpers.observability``, over OpenTelemetry
and iii_rx's own invocation context.

They act on the current OpenTelemetry context, like the official ones. Where the official
helpers return ``None`` because no OpenTelemetry span is active, these fall back to the
running iii_rx invocation (its ``traceparent``, ``baggage``, trace and span ids, which
iii_rx keeps even with OpenTelemetry off), so a handler can pass its trace on by hand
either way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from iii_rx.context import current_context

__all__ = [
    "BaggageSpanProcessor",
    "current_span_id",
    "current_span_is_recording",
    "current_trace_id",
    "execute_traced_request",
    "extract_baggage",
    "extract_context",
    "extract_traceparent",
    "get_all_baggage",
    "get_baggage_entry",
    "inject_baggage",
    "inject_traceparent",
    "record_span_event",
    "remove_baggage_entry",
    "set_baggage_entry",
    "set_current_span_attribute",
    "set_current_span_error",
    "with_span",
]

T = TypeVar("T")
TRACER = "iii_rx.compat"


def _carrier() -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def _invocation_trace() -> tuple[str | None, str | None]:
    """``(traceparent, baggage)`` a call from the running invocation would send."""
    ctx = current_context.get()
    if ctx is None or not ctx.is_invocation:
        return None, None
    return ctx.outgoing_trace()


# ---------------------------------------------------------------------- ids and spans

def current_trace_id() -> str | None:
    """The trace id (32 hex digits) of the current span, else of the running invocation."""
    sc = trace.get_current_span().get_span_context()
    if sc.is_valid:
        return f"{sc.trace_id:032x}"
    ctx = current_context.get()
    return ctx.trace_id if ctx is not None and ctx.is_invocation else None


def current_span_id() -> str | None:
    """The span id (16 hex digits) of the current span, else of the running invocation."""
    sc = trace.get_current_span().get_span_context()
    if sc.is_valid:
        return f"{sc.span_id:016x}"
    ctx = current_context.get()
    return ctx.span_id if ctx is not None and ctx.is_invocation else None


def current_span_is_recording() -> bool:
    """Whether a span is current and recording (not dropped by a sampler)."""
    return trace.get_current_span().is_recording()


def set_current_span_attribute(key: str, value: Any) -> None:
    """Set an attribute on the current span; nothing when none records."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(key, value)


def set_current_span_error(message: str) -> None:
    """Mark the current span failed with ``message``."""
    trace.get_current_span().set_status(Status(StatusCode.ERROR, message))


def record_span_event(name: str, attrs: dict[str, Any] | None = None) -> None:
    """Add an event to the current span; nothing when none records."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(name, attributes=attrs or {})


async def with_span(name: str, fn: Callable[[Any], Awaitable[T]], *, kind: Any = None,
                    traceparent: str | None = None) -> T:
    """Run ``await fn(span)`` inside a new current span ``name`` (kind INTERNAL unless given),
    child of ``traceparent`` if given, else of the current context; the span's status is OK,
    or ERROR with the exception recorded if ``fn`` raised (described ``"<type>: <message>"``,
    as the official helper's spans end up)."""
    if not traceparent and not trace.get_current_span().get_span_context().is_valid:
        traceparent = _invocation_trace()[0]  # a handler with OpenTelemetry off
    parent = (propagate.extract({"traceparent": traceparent}) if traceparent
              else otel_context.get_current())
    tracer = trace.get_tracer(TRACER)
    with tracer.start_as_current_span(name, context=parent,
                                      kind=kind if kind is not None else SpanKind.INTERNAL,
                                      record_exception=False,
                                      set_status_on_exception=False) as span:
        try:
            result = await fn(span)
        except Exception as exc:
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            span.record_exception(exc)
            raise
        span.set_status(Status(StatusCode.OK))
        return result


# ---------------------------------------------------------------------- propagation

def inject_traceparent() -> str | None:
    """The W3C ``traceparent`` naming the current span (or the running invocation)."""
    return _carrier().get("traceparent") or _invocation_trace()[0]


def extract_traceparent(traceparent: str) -> Context:
    """The OpenTelemetry context a ``traceparent`` header describes."""
    return propagate.extract({"traceparent": traceparent})


def inject_baggage() -> str | None:
    """The W3C ``baggage`` header of the current context (or the running invocation)."""
    return _carrier().get("baggage") or _invocation_trace()[1]


def extract_baggage(baggage: str) -> Context:
    """The OpenTelemetry context a ``baggage`` header describes."""
    return propagate.extract({"baggage": baggage})


def extract_context(traceparent: str | None = None, baggage: str | None = None) -> Context:
    """The OpenTelemetry context of both headers (either may be absent)."""
    carrier = {k: v for k, v in (("traceparent", traceparent), ("baggage", baggage)) if v}
    return propagate.extract(carrier)


def get_baggage_entry(key: str) -> str | None:
    """One baggage value of the current context, as text."""
    value = otel_baggage.get_baggage(key)
    return None if value is None else str(value)


def set_baggage_entry(key: str, value: str) -> Context:
    """The current context plus ``key=value`` (attach it to make it current)."""
    return otel_baggage.set_baggage(key, value)


def remove_baggage_entry(key: str) -> Context:
    """The current context without ``key``."""
    return otel_baggage.remove_baggage(key)


def get_all_baggage() -> dict[str, str]:
    """Every baggage entry of the current context, as text."""
    return {k: str(v) for k, v in otel_baggage.get_all().items()}


# ---------------------------------------------------------------------- processors, HTTP

class BaggageSpanProcessor(SpanProcessor):
    """Copies every baggage entry of a span's parent context onto the span as an attribute
    when it starts (add it to a ``TracerProvider`` before the exporting processor)."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if not span.is_recording():
            return
        for key, value in otel_baggage.get_all(parent_context).items():
            if value is not None:
                span.set_attribute(key, str(value))

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _ignored(url: str) -> bool:
    import os

    patterns = [p.strip() for p in os.environ.get("OTEL_FETCH_IGNORE_URLS", "").split(",")]
    return any(p and p in url for p in patterns)


async def execute_traced_request(client: Any, request: Any) -> Any:
    """Send an ``httpx.Request`` with ``client`` (an ``httpx.AsyncClient``) inside a CLIENT
    span ``"<METHOD> <path>"``: HTTP semantic-convention attributes, ``traceparent`` (and
    ``baggage``) injected into the request's headers, status ERROR for a status >= 400 or a
    transport error (recorded). URLs containing an ``OTEL_FETCH_IGNORE_URLS`` pattern are sent
    without a span."""
    import httpx

    url = request.url
    if _ignored(str(url)):
        return await client.send(request)
    method = request.method.upper()
    path = url.path or None
    query = url.query.decode() if isinstance(url.query, bytes) else url.query
    attributes: dict[str, Any] = {"http.request.method": method, "url.full": str(url)}
    for key, value in (("server.address", url.host), ("url.scheme", url.scheme),
                       ("url.path", path), ("server.port", url.port),
                       ("url.query", query or None)):
        if value:
            attributes[key] = value
    if url.scheme:
        attributes["network.protocol.name"] = "http"
    tracer = trace.get_tracer(TRACER)
    name = f"{method} {path}" if path else method
    with tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes,
                                      record_exception=False,
                                      set_status_on_exception=False) as span:
        for key, value in _carrier().items():
            request.headers[key] = value
        for header in ("content-type", "accept"):
            if request.headers.get(header):
                span.set_attribute(f"http.request.header.{header}", request.headers[header])
        if request.content:
            span.set_attribute("http.request.body.size", len(request.content))
        try:
            response = await client.send(request)
        except httpx.HTTPError as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            span.set_attribute("error.type", type(exc).__name__)
            raise
        status = response.status_code
        span.set_attribute("http.response.status_code", status)
        length = response.headers.get("content-length")
        if length and length.isdigit():
            span.set_attribute("http.response.body.size", int(length))
        if response.headers.get("content-type"):
            span.set_attribute("http.response.header.content-type",
                               response.headers["content-type"])
        if status >= 400:
            span.set_status(Status(StatusCode.ERROR, str(status)))
            span.set_attribute("error.type", str(status))
        else:
            span.set_status(Status(StatusCode.OK))
        return response
