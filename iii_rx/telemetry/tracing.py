"""Spans of one client: a CLIENT span per call, a SERVER span per handled invocation.

:class:`Tracing` exists only when ``connect(otel=...)`` enabled OpenTelemetry; the client core
then calls two hooks, and nothing else changes on its hot path:

* :meth:`Tracing.on_call` (``Calls.start``, on the loop): starts ``invoke <function_id>``
  (kind CLIENT) as a child of the caller's trace context, sends that span as the frame's
  ``traceparent`` (the ``baggage`` goes on unchanged), and ends it when the call settles, its
  status ``ERROR`` if the call failed, timed out or was cancelled.
* :meth:`Tracing.on_invoke` (``Worker.on_invoke``, on the loop): starts
  ``execute <function_id>`` (kind SERVER; the official SDKs name their handler span the same)
  as a child of the frame's ``traceparent``/``baggage``, with the payload events of the
  official SDKs (``iii.invocation.input`` / ``iii.invocation.output``). It becomes the
  invocation's :class:`ServerSpan`: the handler runs with it as the current OpenTelemetry span
  (on its task, or on its pool thread), nested calls are its children, and the invocation's
  answer ends it (``ERROR`` with the exception recorded if the handler failed).

:attr:`Tracing.spans` (``iii.spans``) is the live stream of the finished spans this client
started, fed by a span processor, emitted on the client's loop. The same hooks feed the
client's :class:`~iii_rx.telemetry.metrics.Metrics`; channel ends get their transfer spans
through :mod:`~iii_rx.telemetry.hooks` (:mod:`~iii_rx.telemetry.transfers`).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import (
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
)

from iii_rx.aio import LoopBridge
from iii_rx.calls import Call, CallSender, settle
from iii_rx.streams import HotStream
from iii_rx.telemetry import hooks
from iii_rx.telemetry.config import OtelConfig
from iii_rx.telemetry.http import http_attributes, http_status, is_http_request
from iii_rx.telemetry.ids import (
    CANONICAL_TRACEPARENT,
    LOCAL_TRACEPARENTS,
    hex_id,
    made_here,
    parse_traceparent,
    propagate_otel,
)
from iii_rx.telemetry.leanspan import (
    TRACE_FLAGS,
    LeanSpan,
    lean_tracer,
    span_context,
    with_parent,
)
from iii_rx.telemetry.metrics import Metrics, install_meter_provider
from iii_rx.telemetry.payload import payload_max_bytes, payloads_enabled, redacted_json
from iii_rx.telemetry.span_feed import SpanFeed, SpanFeeds
from iii_rx.telemetry.transfers import ChannelTelemetry

__all__ = ["ServerSpan", "Tracing", "parent_of", "remote_parent", "tracer_provider"]

log = logging.getLogger("iii_rx.telemetry")

INSTRUMENTATION = "iii_rx"
_BAGGAGE = W3CBaggagePropagator()
_OK = Status(StatusCode.OK)
_ATTRS_MAX = 1024


_FLAGS_TEXT = ("00", "01")
_ROOT = otel_context.Context()
Parent = tuple[otel_context.Context, SpanContext | None]
"""A parent context and the span context current in it (``None``: none)."""
_PARENTS: dict[tuple[str | None, str | None], Parent] = {}
"""Recently seen parents of calls (see :func:`call_parent`)."""
_PARENTS_MAX = 512


def remote_parent(traceparent: str | None, remote: bool = True) -> SpanContext | None:
    """The span context a frame's ``traceparent`` names (``None``: none, or not a valid one);
    ``remote=False`` for one that names a span of this process."""
    if traceparent is None:
        return None
    if CANONICAL_TRACEPARENT.fullmatch(traceparent) is not None:
        trace_id = int(traceparent[3:35], 16)
        span_id = int(traceparent[36:52], 16)
        flags = int(traceparent[53:], 16)
    else:
        parsed = parse_traceparent(traceparent)
        if parsed is None:
            return None
        trace_id, span_id, flags = (int(part, 16) for part in parsed)
    if not (trace_id and span_id):  # an all-zero id
        return None
    return span_context(trace_id, span_id, remote, TRACE_FLAGS[flags])


def baggage_context(baggage: str | None) -> otel_context.Context:
    """The context holding a frame's ``baggage`` (the empty context when it has none)."""
    return _BAGGAGE.extract({"baggage": baggage}, _ROOT) if baggage else _ROOT


def parent_of(traceparent: str | None, baggage: str | None, remote: bool = True) -> Parent:
    """The OpenTelemetry context a frame's ``traceparent``/``baggage`` describe (the empty
    context when it carries neither: the span starts a trace), and the span context it makes
    current (``None``: none; see :func:`remote_parent` for ``remote``)."""
    if traceparent is None and not baggage:
        return _ROOT, None
    span_context = remote_parent(traceparent, remote)
    return with_parent(baggage_context(baggage), span_context), span_context


def call_parent(traceparent: str | None, baggage: str | None) -> Parent:
    """:func:`parent_of`, remembered: the calls of one handler (or the retries of one call)
    share their parent. It is local when the caller made the ``traceparent`` from a span of
    this process (:func:`~iii_rx.telemetry.ids.made_here`), as nearly every call's is."""
    if traceparent is None and not baggage:
        return _ROOT, None
    key = (traceparent, baggage)
    found = _PARENTS.get(key)
    if found is None:
        if len(_PARENTS) >= _PARENTS_MAX:
            _PARENTS.clear()
        found = _PARENTS[key] = parent_of(traceparent, baggage,
                                          traceparent not in LOCAL_TRACEPARENTS)
    return found


def traceparent_of(span: trace.Span) -> str:
    """The ``traceparent`` naming ``span`` as the parent, with the sampled flag only (see
    :func:`~iii_rx.telemetry.ids.wire_traceparent`: the random-trace-id bit breaks the trace
    at the Rust engine)."""
    sc = span.get_span_context()
    flags = _FLAGS_TEXT[sc.trace_flags & 0x01]
    return f"00-{hex_id(sc.trace_id, 32)}-{hex_id(sc.span_id, 16)}-{flags}"


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


class ServerSpan:
    """The span of one invocation, ended by its answer (see the module docstring)."""

    __slots__ = ("attributes", "context", "http", "span", "started", "tracing")

    def __init__(self, tracing: Tracing, span: trace.Span, context: otel_context.Context,
                 attributes: dict[str, Any], http: bool) -> None:
        self.tracing = tracing
        self.span = span
        self.context = context
        """The OpenTelemetry context the handler runs in (this span, the caller's baggage)."""
        self.attributes = attributes
        self.http = http
        """Whether an ``http`` trigger made the invocation (its answer has a status code)."""
        self.started = time.perf_counter()

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
        if current is not self.span:
            sc = current.get_span_context()
            if sc.is_valid and sc.trace_id == self.span.get_span_context().trace_id:
                return made_here(traceparent_of(current))
        return made_here(traceparent_of(self.span))

    def end(self, result: Any, error: Any) -> None:
        """The invocation was answered with ``result`` or ``error`` (an exception, an
        ``ErrorBody``, a text), or abandoned (``error`` is ``None``, ``result`` is ``...``).
        Never raises: the answer is sent after this."""
        try:
            tracing = self.tracing
            span = self.span
            if tracing.metrics is not None:
                self._count(result, error)
            if not span.is_recording():
                return
            if self.http:
                status = http_status(result) if error is None else None
                if status is not None:
                    span.set_attribute("http.response.status_code", status)
            if error is not None:
                self._failed(span, error)
            elif result is ...:  # the client closed first: failed, as the metrics count it
                _end_failed(span, None, "abandoned: the client closed before the handler "
                            "answered", "abandoned")
            elif not tracing.payloads:
                _finish(span, _OK)
            else:
                text, cut = redacted_json(result, tracing.max_bytes)
                _finish(span, _OK, "iii.invocation.output", {
                    "iii.payload.json": text, "iii.payload.truncated": cut,
                    "iii.payload.ok": True})
        except Exception:
            hook_failed("ending an invocation's span")

    def _count(self, result: Any, error: Any) -> None:
        tracing = self.tracing
        assert tracing.metrics is not None
        code = (None if error is None and result is not ... else "abandoned"
                if error is None else _code_of(error) or "invocation_failed")
        tracing.metrics.invocation_done((self.attributes["iii.function.id"],
                                         tracing.worker_name), self.attributes, self.started,
                                        code, self.span.is_recording(), self.context)

    def _failed(self, span: trace.Span, error: Any) -> None:
        message = getattr(error, "message", None) or str(error)
        if self.tracing.payloads:
            text, cut = redacted_json({"error": message}, self.tracing.max_bytes)
            _add_payload_event(span, "iii.invocation.output", {
                "iii.payload.json": text, "iii.payload.truncated": cut,
                "iii.payload.ok": False})
        _end_failed(span, error, message, _code_of(error) or "invocation_failed")


class Tracing:
    """The spans (and metrics) of one client (see the module docstring)."""

    def __init__(self, config: OtelConfig, bridge: LoopBridge, worker_name: str,
                 provider: trace.TracerProvider | None = None,
                 metrics: Metrics | None = None) -> None:
        propagate_otel()
        self.config = config
        self.provider = provider if provider is not None else tracer_provider(config)
        self.tracer = self.provider.get_tracer(INSTRUMENTATION)
        self._lean = lean_tracer(self.tracer)
        self.metrics = metrics
        """The client's instruments, ``None`` when ``metrics_enabled`` is ``False``."""
        self.spans: HotStream[ReadableSpan] = HotStream(bridge, "iii.spans")
        """Finished spans this client started (OpenTelemetry ``ReadableSpan``), live."""
        self._feed = SpanFeed(self.spans, bridge)
        self._feeds = SpanFeeds.join(self.provider, self._feed)
        self.payloads = payloads_enabled()
        self.max_bytes = payload_max_bytes()
        self.worker_name = worker_name
        self._functions: dict[str, _Function] = {}

    def _started(self, span: trace.Span) -> None:
        self._feed.mine.add(span.get_span_context().span_id)

    def _function(self, function_id: str) -> _Function:
        """The span names and attributes of ``function_id`` (built once per id)."""
        found = self._functions.get(function_id)
        if found is None:
            if len(self._functions) >= _ATTRS_MAX:
                self._functions.clear()
            found = self._functions[function_id] = _Function(function_id, self.worker_name)
        return found

    def _start(self, name: str, parent: SpanContext | None,
               context: otel_context.Context | None, kind: SpanKind,
               attributes: dict[str, Any]) -> trace.Span:
        """A span of this client, child of ``parent`` (current in ``context``, which may be
        ``None`` only when the lean tracer does not need it): lean on an SDK pipeline, else
        the tracer's own."""
        if self._lean is not None:
            return self._lean.start(name, parent, context, kind, attributes)
        assert context is not None
        return self.tracer.start_span(name, context, kind=kind, attributes=attributes)

    # ------------------------------------------------------------------ caller side

    def on_call(self, call: Call, target: Any, send: CallSender) -> Callable[[], None]:
        """Start ``call`` (a :class:`~iii_rx.calls.Call`) with ``send`` inside its CLIENT
        span: the frame's ``traceparent`` names the span, the call's outcome ends it (a
        cancelled call ends it too, as an error); returns the call's canceller."""
        try:
            function = self._function(call.function_id)
            attributes = function.attributes
            context, parent = call_parent(call.traceparent, call.baggage)
            span = self._start(function.invoke, parent, context, SpanKind.CLIENT, attributes)
            sent = call.retraced(traceparent_of(span))
            recording = span.is_recording()
            if recording and self.spans.has_observers:
                self._started(span)
        except Exception:
            hook_failed("starting a call's span")
            return send(call, target)  # untraced
        if not recording and self.metrics is None:  # sampled out: nothing to end
            return send(sent, target)
        ending = _Ending(span if recording else None, target, self.metrics, attributes)
        return ending.cancels(send(sent, ending))

    # ------------------------------------------------------------------ worker side

    def on_invoke(self, invocation: Any) -> None:
        """Start the SERVER span of ``invocation`` and give it to the invocation (if that
        fails, the invocation runs untraced)."""
        try:
            function = self._function(invocation.function_id)
            parent = remote_parent(invocation.traceparent)
            outer = baggage_context(invocation.baggage)
            base = function.attributes
            attributes = base
            if invocation.invocation_id is not None:
                attributes = {**base, "iii.invocation.id": invocation.invocation_id}
            data = invocation.data
            http = isinstance(data, dict) and is_http_request(data)
            if http:
                attributes = {**attributes, **http_attributes(data)}
            lean = self._lean
            context = (None if lean is not None and not lean.needs_context()
                       else with_parent(outer, parent))
            span = self._start(function.execute, parent, context, SpanKind.SERVER, attributes)
            if self.spans.has_observers:
                self._started(span)
            if self.payloads and span.is_recording():
                text, cut = redacted_json(data, self.max_bytes)
                _add_payload_event(span, "iii.invocation.input",
                                   {"iii.payload.json": text, "iii.payload.truncated": cut})
            # The handler's context: the caller's baggage, this span current.
            invocation.trace = ServerSpan(self, span, trace.set_span_in_context(span, outer),
                                          base, http)
        except Exception:
            invocation.trace = None
            hook_failed("starting an invocation's span")

    def close(self) -> None:
        """The client closed: the span stream completes, the processor goes quiet."""
        self._feed.closed = True
        self._feed.mine.clear()
        if self._feeds is not None:
            self._feeds.leave(self._feed)
        self.spans.on_completed()


class _Function:
    """What every span of one function starts with."""

    __slots__ = ("attributes", "execute", "invoke")

    def __init__(self, function_id: str, worker_name: str) -> None:
        self.invoke = f"invoke {function_id}"
        self.execute = f"execute {function_id}"
        self.attributes = {"iii.function.id": function_id, "iii.worker.name": worker_name}
        """Shared by the spans (never changed: a span copies them before it changes them)."""


def _add_payload_event(span: trace.Span, name: str, attributes: dict[str, Any]) -> None:
    """A payload event (its attributes text and booleans, a fresh dict)."""
    if type(span) is LeanSpan:
        span.add_known_event(name, attributes)
    else:
        span.add_event(name, attributes)


def _finish(span: trace.Span, status: Status, name: str | None = None,
            attributes: dict[str, Any] | None = None) -> None:
    """Add the event ``name`` (attributes as for :func:`_add_payload_event`), set ``status``
    and end ``span``: in one step on a lean span."""
    if type(span) is LeanSpan:
        span.finish(status, name, attributes)
        return
    if name is not None:
        span.add_event(name, attributes)
    span.set_status(status)
    span.end()


def _end_failed(span: trace.Span, error: Any, message: str, code: str | None) -> None:
    """End ``span`` as failed: ``error`` recorded when it is an exception, ``code`` as
    ``iii.error.code``, the status ``ERROR`` with ``message``."""
    if isinstance(error, BaseException):
        span.record_exception(error)
    if code is not None:
        span.set_attribute("iii.error.code", code)
    span.set_status(Status(StatusCode.ERROR, message))
    span.end()


_HOOK_FAILURES = [0]


def hook_failed(what: str) -> None:
    """A telemetry hook raised (logged, the first ten times in a process): the call or the
    invocation goes on, its span possibly incomplete. Telemetry never costs an answer."""
    _HOOK_FAILURES[0] += 1
    if _HOOK_FAILURES[0] <= 10:
        log.warning("telemetry: %s failed; going on without it", what, exc_info=True)


def _code_of(error: Any) -> str | None:
    code = getattr(error, "code", None)
    return code if isinstance(code, str) else None


class _Ending:
    """The target of a traced call: ends its span and counts it, once, when the call settles
    or is cancelled, then hands the outcome on."""

    __slots__ = ("attributes", "metrics", "span", "started", "target")

    def __init__(self, span: trace.Span | None, target: Any, metrics: Metrics | None,
                 attributes: dict[str, Any]) -> None:
        self.span = span
        self.target: Any = target
        self.metrics = metrics
        self.attributes = attributes
        self.started = time.perf_counter()

    def __call__(self, value: Any, error: BaseException | None) -> None:
        target = self.target
        if target is None:
            return
        self.target = None
        try:
            self._end(error)
        except Exception:
            hook_failed("ending a call's span")
        settle(target, value, error)

    def _end(self, error: BaseException | None) -> None:
        code = None if error is None else _code_of(error) or type(error).__name__
        span = self.span
        if self.metrics is not None:
            attributes = self.attributes
            self.metrics.call_done(
                (attributes["iii.function.id"], attributes["iii.worker.name"]), attributes,
                self.started, code, span is not None)
        if span is None:
            return
        if error is None:
            _finish(span, _OK)
        else:
            _end_failed(span, error, str(error), code)

    def cancels(self, cancel: Callable[[], None]) -> Callable[[], None]:
        """``cancel``, which also ends the span (a cancelled call is an error: ``cancelled``)."""
        def cancelled() -> None:
            cancel()
            if self.target is not None:
                self.target = None
                try:
                    self._end(_Cancelled("the call was cancelled before its answer came"))
                except Exception:
                    hook_failed("ending a cancelled call's span")

        return cancelled


class _Cancelled(Exception):
    """What a cancelled call's span records."""

    code = "cancelled"


def attach(client: Any, config: OtelConfig) -> Tracing:
    """Trace ``client`` (a connected :class:`~iii_rx.client.Client`): its calls and its
    invocations get spans (and metrics unless ``metrics_enabled`` is ``False``),
    ``client.spans`` streams them, channel ends get transfer spans, what nobody else exports
    goes to the engine (:mod:`~iii_rx.telemetry.export`), and its close completes the
    stream."""
    from opentelemetry import metrics as otel_metrics

    from iii_rx.telemetry import export

    provider = tracer_provider(config)
    tracing = Tracing(config, client.bridge, client.name, provider)
    client._calls.trace_call = tracing.on_call
    client._worker.telemetry = tracing
    client.spans = tracing.spans
    client._telemetry_stack.callback(tracing.close)
    measured = config.metrics_enabled is not False
    if measured:  # an exporter named by OTEL_METRICS_EXPORTER comes before the engine's
        install_meter_provider(config, getattr(provider, "resource", None))
    if config.logs_enabled is not False:
        from iii_rx.telemetry import logs

        logs.enable()
    export.attach(client, config, tracing.provider)
    if measured:
        metrics = tracing.metrics = Metrics.of(otel_metrics.get_meter_provider())
        metrics.join(client.name)
        client._telemetry_stack.callback(metrics.leave, client.name)
        client._telemetry_stack.callback(metrics.watch(client.state).dispose)
    transfers = ChannelTelemetry(tracing.tracer, tracing.metrics)
    hooks.install(transfers)
    client._telemetry_stack.callback(hooks.uninstall, transfers)
    return tracing
