"""``Logger`` records as OpenTelemetry log records, once a client enabled OpenTelemetry.

The records go to the process's ``LoggerProvider`` (a no-op until one is configured), with
the trace and span of the invocation that logged, so a backend shows them under its span.
They go through the standard :mod:`logging` module as well, always (``iii_rx.context``).
"""

from __future__ import annotations

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


def emit(level: int, message: str, attributes: dict[str, Any],
         trace_id: str | None, span_id: str | None, *,
         logger_name: str = "iii_rx.logger") -> None:
    """Emit one log record (``trace_id``/``span_id`` in hex, ``None`` for none) on the
    OpenTelemetry logger ``logger_name``."""
    ctx = None
    if trace_id and span_id:
        try:
            ctx = trace.set_span_in_context(NonRecordingSpan(SpanContext(
                int(trace_id, 16), int(span_id, 16), is_remote=False,
                trace_flags=TraceFlags(TraceFlags.SAMPLED))), otel_context.Context())
        except ValueError:
            ctx = None
    attrs = {k: v if isinstance(v, (str, bool, int, float)) else _structured(v)
             for k, v in attributes.items() if v is not None}
    _logs.get_logger(logger_name).emit(
        timestamp=time.time_ns(), context=ctx,
        severity_number=_SEVERITY.get(level, SeverityNumber.INFO),
        severity_text=logging.getLevelName(level), body=message, attributes=attrs)
