"""``iii_helpers.observability`` over iii_rx: the same names, the same behaviour.

``from iii_helpers.observability import with_span`` becomes
``from iii_rx.compat.observability import with_span`` (or ``from iii_rx.compat import
with_span``). The span and propagation helpers are in
:mod:`~iii_rx.compat.observability_spans`, ``init_otel`` and friends in
:mod:`~iii_rx.compat.observability_setup`, the worker gauges (the official
``iii.otel_worker_gauges``) in :mod:`~iii_rx.compat.observability_gauges`; the payload helpers
below are iii_rx's own redaction (:mod:`iii_rx.telemetry.payload`) under the official names.
"""

from __future__ import annotations

from typing import Any

from iii_rx.compat.logger import Logger
from iii_rx.compat.observability_gauges import register_worker_gauges, stop_worker_gauges
from iii_rx.compat.observability_setup import (
    attach_event_loop,
    flush_otel,
    get_logger,
    init_otel,
    shutdown_otel,
    shutdown_otel_async,
)
from iii_rx.compat.observability_spans import (
    BaggageSpanProcessor,
    current_span_id,
    current_span_is_recording,
    current_trace_id,
    execute_traced_request,
    extract_baggage,
    extract_context,
    extract_traceparent,
    get_all_baggage,
    get_baggage_entry,
    inject_baggage,
    inject_traceparent,
    record_span_event,
    remove_baggage_entry,
    set_baggage_entry,
    set_current_span_attribute,
    set_current_span_error,
    with_span,
)
from iii_rx.compat.options import OtelConfig, ReconnectionConfig
from iii_rx.telemetry import payload

__all__ = [
    "REDACTED_PLACEHOLDER",
    "BaggageSpanProcessor",
    "Logger",
    "OtelConfig",
    "ReconnectionConfig",
    "attach_event_loop",
    "current_span_id",
    "current_span_is_recording",
    "current_trace_id",
    "execute_traced_request",
    "extract_baggage",
    "extract_context",
    "extract_traceparent",
    "flush_otel",
    "get_all_baggage",
    "get_baggage_entry",
    "get_logger",
    "init_otel",
    "inject_baggage",
    "inject_traceparent",
    "record_span_event",
    "redact",
    "redact_and_truncate",
    "register_worker_gauges",
    "remove_baggage_entry",
    "resolve_max_bytes_from_env",
    "set_baggage_entry",
    "set_current_span_attribute",
    "set_current_span_error",
    "shutdown_otel",
    "shutdown_otel_async",
    "stop_worker_gauges",
    "with_span",
]

REDACTED_PLACEHOLDER = payload.REDACTED
"""What a secret-looking key's value becomes: ``"[REDACTED]"``."""


def redact(value: Any) -> Any:
    """``value`` with the values of secret-looking keys (``password``, ``api_key``,
    ``*_token``, ...) replaced by :data:`REDACTED_PLACEHOLDER`, at any depth; a new value
    (tuples stay tuples)."""
    if isinstance(value, tuple):
        return tuple(redact(item) for item in value)
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, dict):
        return {k: REDACTED_PLACEHOLDER if isinstance(k, str) and payload._secret(k)
                else redact(v) for k, v in value.items()}
    return value


def redact_and_truncate(value: Any, max_bytes: int | None = None) -> tuple[str, bool]:
    """``(json, truncated)``: ``value`` redacted, as JSON, cut to ``max_bytes`` UTF-8 bytes
    with a ``..."[TRUNCATED]"`` marker (no cap when ``max_bytes`` is unset or not
    positive)."""
    return payload.redacted_json(value, max_bytes if max_bytes and max_bytes > 0 else None,
                                 compact=False)


def resolve_max_bytes_from_env() -> int | None:
    """``III_TRACE_PAYLOAD_MAX_BYTES`` as a positive int; ``None`` when unset, invalid,
    not positive or ``unlimited``."""
    return payload.payload_max_bytes()
