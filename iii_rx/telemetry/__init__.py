"""Telemetry: W3C trace context on the wire, and OpenTelemetry spans, logs and a span stream.

* :mod:`~iii_rx.telemetry.ids` moves the ids (always; cheap when OpenTelemetry is off);
* :mod:`~iii_rx.telemetry.config` is :class:`OtelConfig`, what ``connect(otel=...)`` takes;
* :mod:`~iii_rx.telemetry.tracing` makes the spans of a client that enabled it (imported only
  then: OpenTelemetry's SDK costs nothing to a client that does not trace);
* :mod:`~iii_rx.telemetry.logs` sends ``Logger`` records to OpenTelemetry logs.

See ``docs/telemetry.md``.
"""

from __future__ import annotations

from iii_rx.telemetry.config import OtelConfig, OtelOption, resolve_otel
from iii_rx.telemetry.ids import (
    format_traceparent,
    new_span_id,
    new_trace_id,
    otel_enabled,
    otel_trace_headers,
    parse_traceparent,
    propagate_otel,
    wire_traceparent,
)

__all__ = [
    "OtelConfig",
    "OtelOption",
    "format_traceparent",
    "new_span_id",
    "new_trace_id",
    "otel_enabled",
    "otel_trace_headers",
    "parse_traceparent",
    "propagate_otel",
    "resolve_otel",
    "wire_traceparent",
]
