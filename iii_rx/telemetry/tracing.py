"""Spans of one client: a CLIENT span per call, a SERVER span per handled invocation.

:class:`Tracing` exists only when ``connect(otel=...)`` enabled OpenTelemetry; the client core
then calls two hooks, and nothing else changes on its hot path:

* :meth:`Tracing.on_call` (``Calls.start``, on the loop): starts ``invoke <function_id>``
  (kind CLIENT) as a child of the caller's trace context, sends that span as the frame's
  ``traceparent`` (the ``baggage`` goes on unchanged), and ends it when the call settles, its
  status ``ERROR`` if the call failed.
* :meth:`Tracing.on_invoke` (``Worker.on_invoke``, on the loop): starts
  ``execute <function_id>`` (kind SERVER; the official SDKs name their handler span the same)
  as a child of the frame's ``traceparent``/``baggage``, with the payload events of the
  official SDKs (``iii.invocation.input`` / ``iii.invocation.output``). It becomes the
  invocation's :class:`ServerSpan`: the handler runs with it as the current OpenTelemetry span
  (on its task, or on its pool thread), nested calls are its children, and the invocation's
  answer ends it (``ERROR`` with the exception recorded if the handler failed).

:attr:`Tracing.spans` (``iii.spans``) is the live stream of the finished spans this client
started, fed by a span processor, emitted on the client's loop.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import uuid
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from iii_rx.aio import LoopBridge
from iii_rx.streams import HotStream
from iii_rx.telemetry.config import OtelConfig
from iii_rx.telemetry.ids import format_traceparent, parse_traceparent, propagate_otel
from iii_rx.telemetry.payload import payload_max_bytes, payloads_enabled, redacted_json

__all__ = ["ServerSpan", "SpanFeed", "Tracing", "parent_context", "tracer_provider"]

log = logging.getLogger("iii_rx.telemetry")

INSTRUMENTATION = "iii_rx"
_BAGGAGE = W3CBaggagePropagator()
_OK = Status(StatusCode.OK)


def parent_context(traceparent: str | None, baggage: str | None) -> otel_context.Context:
    """The OpenTelemetry context a frame's ``traceparent``/``baggage`` describe (the empty
    context when it carries neither: the span starts a trace)."""
    ctx = otel_context.Context()
    parsed = parse_traceparent(traceparent)
    if parsed is not None:
        trace_id, span_id, flags = parsed
        ctx = trace.set_span_in_context(NonRecordingSpan(SpanContext(
            int(trace_id, 16), int(span_id, 16), is_remote=True,
            trace_flags=TraceFlags(int(flags, 16)))), ctx)
    if baggage:
        ctx = _BAGGAGE.extract({"baggage": baggage}, ctx)
    return ctx


def traceparent_of(span: trace.Span) -> str:
    """The ``traceparent`` naming ``span`` as the parent."""
    sc = span.get_span_context()
    return format_traceparent(f"{sc.trace_id:032x}", f"{sc.span_id:016x}",
                              f"{int(sc.trace_flags):02x}")


def tracer_provider(config: OtelConfig) -> trace.TracerProvider:
    """The process's tracer provider; when none is set, an SDK one is installed (its exporter
    from ``OTEL_TRACES_EXPORTER``: ``console``, ``otlp`` if installed, else none)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, trace.ProxyTracerProvider):
        return provider
    from opentelemetry.sdk.resources import Resource

    attributes: dict[str, Any] = {
        "service.name": (config.service_name or os.environ.get("OTEL_SERVICE_NAME")
                         or "iii-rx"),
        "service.version": (config.service_version or os.environ.get("SERVICE_VERSION")
                            or "unknown"),
        "service.instance.id": config.service_instance_id or str(uuid.uuid4()),
    }
    if config.service_namespace:
        attributes["service.namespace"] = config.service_namespace
    sdk = SdkTracerProvider(resource=Resource.create(attributes))
    _add_env_exporter(sdk, config)
    # No exporter chosen: iii_rx.telemetry.export sends to the engine's /otel socket.
    sdk.iii_rx_default = not os.environ.get("OTEL_TRACES_EXPORTER", "").strip()  # type: ignore[attr-defined]
    trace.set_tracer_provider(sdk)
    return trace.get_tracer_provider()


def _add_env_exporter(provider: SdkTracerProvider, config: OtelConfig) -> None:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    kind = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    delay = config.spans_flush_interval_ms or 100
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif kind == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter,
            )
        except ImportError:
            log.warning("OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http")
            return
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(),
                                                       schedule_delay_millis=delay))


class SpanFeed(SpanProcessor):
    """Hands the finished spans of one client to its ``iii.spans`` stream (on its loop)."""

    def __init__(self, stream: HotStream[ReadableSpan], bridge: LoopBridge) -> None:
        self._stream = stream
        self._bridge = bridge
        self.mine: set[int] = set()
        """Span ids this client started and has not seen end (only while observed)."""
        self.closed = False

    def on_end(self, span: ReadableSpan) -> None:
        sc = span.context
        if self.closed or sc is None or not self.mine:
            return
        try:
            self.mine.remove(sc.span_id)
        except KeyError:
            return
        try:
            self._bridge.run_sync_soon(self._stream.on_next, span)
        except RuntimeError:  # the loop is closed
            self.closed = True

    def shutdown(self) -> None:
        self.closed = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class ServerSpan:
    """The span of one invocation, ended by its answer (see the module docstring)."""

    __slots__ = ("context", "span", "tracing")

    def __init__(self, tracing: Tracing, span: trace.Span, context: otel_context.Context) -> None:
        self.tracing = tracing
        self.span = span
        self.context = context
        """The OpenTelemetry context the handler runs in (this span, the caller's baggage)."""

    def attach(self) -> object:
        """Make this span current (in this thread or task); returns the token for
        :meth:`detach`."""
        return otel_context.attach(self.context)

    @staticmethod
    def detach(token: object) -> None:
        otel_context.detach(token)  # type: ignore[arg-type]

    def traceparent(self) -> str:
        """The ``traceparent`` for a call made inside the handler: the current span when it
        belongs to this trace (a span the handler started), else this one."""
        current = trace.get_current_span()
        sc = current.get_span_context()
        if sc.is_valid and sc.trace_id == self.span.get_span_context().trace_id:
            return traceparent_of(current)
        return traceparent_of(self.span)

    def end(self, result: Any, error: Any) -> None:
        """The invocation was answered with ``result`` or ``error`` (an exception, an
        ``ErrorBody``, a text), or abandoned (``error`` is ``None``, ``result`` is ``...``)."""
        span = self.span
        tracing = self.tracing
        if error is None:
            if result is not ... and tracing.payloads:
                text, cut = redacted_json(result, tracing.max_bytes)
                span.add_event("iii.invocation.output", {
                    "iii.payload.json": text, "iii.payload.truncated": cut,
                    "iii.payload.ok": True})
            span.set_status(_OK)
        else:
            message = getattr(error, "message", None) or str(error)
            if tracing.payloads:
                text, cut = redacted_json({"error": message}, tracing.max_bytes)
                span.add_event("iii.invocation.output", {
                    "iii.payload.json": text, "iii.payload.truncated": cut,
                    "iii.payload.ok": False})
            if isinstance(error, BaseException):
                span.record_exception(error)
            code = getattr(error, "code", None)
            if isinstance(code, str):
                span.set_attribute("iii.error.code", code)
            span.set_status(Status(StatusCode.ERROR, message))
        span.end()


class Tracing:
    """The spans of one client (see the module docstring)."""

    def __init__(self, config: OtelConfig, bridge: LoopBridge, worker_name: str,
                 provider: trace.TracerProvider | None = None) -> None:
        propagate_otel()
        self.config = config
        self.provider = provider if provider is not None else tracer_provider(config)
        self.tracer = self.provider.get_tracer(INSTRUMENTATION)
        self.spans: HotStream[ReadableSpan] = HotStream(bridge, "iii.spans")
        """Finished spans this client started (OpenTelemetry ``ReadableSpan``), live."""
        self._feed = SpanFeed(self.spans, bridge)
        add = getattr(self.provider, "add_span_processor", None)
        if add is not None:
            add(self._feed)
        self.payloads = payloads_enabled()
        self.max_bytes = payload_max_bytes()
        self.worker_name = worker_name

    def _started(self, span: trace.Span) -> None:
        if self.spans.has_observers:
            self._feed.mine.add(span.get_span_context().span_id)

    # ------------------------------------------------------------------ caller side

    def on_call(self, call: Any, target: Any) -> tuple[Any, Any]:
        """Start the CLIENT span of ``call`` (a :class:`~iii_rx.calls.Call`); returns the call
        to send (its ``traceparent`` naming the span) and the target that ends the span."""
        function_id = call.function_id
        span = self.tracer.start_span(
            f"invoke {function_id}", parent_context(call.traceparent, call.baggage),
            kind=SpanKind.CLIENT,
            attributes={"iii.function.id": function_id, "iii.worker.name": self.worker_name})
        self._started(span)
        sent = copy.copy(call)
        sent.traceparent = traceparent_of(span)
        return sent, _ending(span, target)

    # ------------------------------------------------------------------ worker side

    def on_invoke(self, invocation: Any) -> None:
        """Start the SERVER span of ``invocation`` and give it to the invocation."""
        function_id = invocation.function_id
        parent = parent_context(invocation.traceparent, invocation.baggage)
        attributes = {"iii.function.id": function_id, "iii.worker.name": self.worker_name}
        if invocation.invocation_id is not None:
            attributes["iii.invocation.id"] = invocation.invocation_id
        span = self.tracer.start_span(f"execute {function_id}", parent,
                                      kind=SpanKind.SERVER, attributes=attributes)
        self._started(span)
        if self.payloads:
            text, cut = redacted_json(invocation.data, self.max_bytes)
            span.add_event("iii.invocation.input", {"iii.payload.json": text,
                                                    "iii.payload.truncated": cut})
        invocation.trace = ServerSpan(self, span, trace.set_span_in_context(span, parent))

    def close(self) -> None:
        """The client closed: the span stream completes, the processor goes quiet."""
        self._feed.closed = True
        self._feed.mine.clear()
        self.spans.on_completed()


def _ending(span: trace.Span, target: Any) -> Callable[[Any, BaseException | None], None]:
    """A call target that ends ``span`` with the call's outcome, then hands it on."""

    def done(value: Any, error: BaseException | None) -> None:
        if error is None:
            span.set_status(_OK)
        else:
            span.record_exception(error)
            code = getattr(error, "code", None)
            if isinstance(code, str):
                span.set_attribute("iii.error.code", code)
            span.set_status(Status(StatusCode.ERROR, str(error)))
        span.end()
        if isinstance(target, asyncio.Future):
            if not target.done():
                if error is not None:
                    target.set_exception(error)
                else:
                    target.set_result(value)
        else:
            target(value, error)

    return done


def attach(client: Any, config: OtelConfig) -> Tracing:
    """Trace ``client`` (a connected :class:`~iii_rx.client.Client`): its calls and its
    invocations get spans, ``client.spans`` streams them, its close completes that stream."""
    tracing = Tracing(config, client.bridge, client.name)
    client._calls.trace_call = tracing.on_call
    client._worker.telemetry = tracing
    client.spans = tracing.spans
    client._resources.callback(tracing.close)
    if config.logs_enabled is not False:
        from iii_rx.telemetry import logs

        logs.enable()
    from iii_rx.telemetry import export

    export.attach(client, config, tracing.provider)
    return tracing
