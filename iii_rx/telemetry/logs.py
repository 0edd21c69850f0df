"""``Logger`` records as OpenTelemetry log records, once a client enabled OpenTelemetry.

The records go to the process's ``LoggerProvider`` (a no-op until one is configured), with
the trace and span of the invocation that logged, so a backend shows them under its span.
They go through the standard :mod:`logging` module as well, always (``iii_rx.context``).
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from typing import Any

from opentelemetry import _logs, trace
from opentelemetry import context as otel_context
from opentelemetry._logs import SeverityNumber
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from iii_rx.telemetry.ids import OTEL_LOGS

__all__ = ["emit", "enable"]


def enable() -> None:
    """Send ``Logger`` records to OpenTelemetry logs from now on."""
    OTEL_LOGS[0] = True

_SEVERITY = {
    logging.DEBUG: SeverityNumber.DEBUG,
    logging.INFO: SeverityNumber.INFO,
    logging.WARNING: SeverityNumber.WARN,
    logging.ERROR: SeverityNumber.ERROR,
}


def _rich_attributes() -> bool:
    """Whether log attributes may be maps and lists (OpenTelemetry's "AnyValue"), as in the
    SDK releases that have ``ReadWriteLogRecord``; older ones keep only primitives."""
    try:
        from opentelemetry.sdk._logs import ReadWriteLogRecord  # noqa: F401
    except ImportError:
        return False
    return True


_RICH = _rich_attributes()


def _structured(value: Any) -> Any:
    """``value`` as a JSON-shaped attribute (a map stays a map where the SDK allows it, as the
    official SDK sends ``log.data``), else as JSON text."""
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)
    return json.loads(text) if _RICH else text


_SEVERITY_TEXT = {logging.WARNING: "WARN", logging.CRITICAL: "FATAL"}
"""OpenTelemetry's short names where ``logging``'s differ: the official SDKs send ``WARN``, and
a query for it (``engine::logs::list``) must find every SDK's warnings."""


def emit(level: int, message: str, attributes: dict[str, Any],
         trace_id: str | None, span_id: str | None, *,
         logger_name: str = "iii_rx.logger") -> None:
    """Emit one log record (``trace_id``/``span_id`` in hex, ``None`` for none) on the
    OpenTelemetry logger ``logger_name``."""
    span_context = None
    if trace_id and span_id:
        try:
            span_context = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=False,
                                       trace_flags=TraceFlags(TraceFlags.SAMPLED))
        except ValueError:
            span_context = None
    attrs = {k: v if isinstance(v, (str, bool, int, float)) else _structured(v)
             for k, v in attributes.items() if v is not None}
    logger = _logs.get_logger(logger_name)
    severity = _SEVERITY.get(level, SeverityNumber.INFO)
    text = _SEVERITY_TEXT.get(level) or logging.getLevelName(level)
    if not _takes_keywords(logger):
        _emit_record(logger, span_context, severity, text, message, attrs)
        return
    ctx = (None if span_context is None
           else trace.set_span_in_context(NonRecordingSpan(span_context), otel_context.Context()))
    logger.emit(timestamp=time.time_ns(), context=ctx, severity_number=severity,
                severity_text=text, body=message, attributes=attrs)


_KEYWORDS: dict[type, bool] = {}


def _takes_keywords(logger: Any) -> bool:
    """Whether ``logger.emit`` takes the record's fields as keywords (OpenTelemetry 1.39 on);
    older releases take one ``LogRecord``."""
    kind = type(logger)
    found = _KEYWORDS.get(kind)
    if found is None:
        try:
            found = "timestamp" in inspect.signature(logger.emit).parameters
        except (TypeError, ValueError):
            found = False
        _KEYWORDS[kind] = found
    return found


def _emit_record(logger: Any, span_context: SpanContext | None, severity: SeverityNumber,
                 severity_text: str, body: str, attributes: dict[str, Any]) -> None:
    """Emit as the releases before keyword ``emit`` want it: an SDK ``LogRecord`` holding the
    trace ids and the logger's resource."""
    from opentelemetry.sdk import _logs as sdk_logs

    ids: dict[str, Any] = {}
    if span_context is not None:
        ids = {"trace_id": span_context.trace_id, "span_id": span_context.span_id,
               "trace_flags": span_context.trace_flags}
    record = sdk_logs.LogRecord(  # type: ignore[attr-defined]  # gone from today's SDK
        timestamp=time.time_ns(), severity_text=severity_text, severity_number=severity,
        body=body, resource=getattr(logger, "resource", None), attributes=attributes, **ids)
    logger.emit(record)
