"""``Logger`` of the conventional API (``iii_helpers.observability.Logger``).

Every call logs a record on the standard :mod:`logging` logger ``iii.logger``, message
``"[service] text"`` (``"[] text"`` without a service name, as the official SDK's fallback
prints it), the structured payload as the record attribute ``data`` and the ids as
``trace_id`` / ``span_id``. With OpenTelemetry on (a client of this process connected with
``otel``, or ``init_otel`` ran) it also emits one OpenTelemetry log record (body = the message,
severity ``INFO``/``WARN``/``ERROR``/``DEBUG``, attributes ``service.name`` and ``log.data``),
tied to ``trace_id``/``span_id`` when given, else to the current span, else to the running
invocation; it reaches the engine's ``/otel`` socket or whatever log exporter is configured.
The official SDK takes one path or the other; iii_rx keeps ``logging`` always, so that the
application's log handlers see every record whatever the telemetry does.

The reactive API's context-bound logger is :class:`iii_rx.context.Logger`, a different class.
"""

from __future__ import annotations

import logging
from typing import Any

from iii_rx.compat.observability_spans import current_span_id, current_trace_id
from iii_rx.telemetry.ids import OTEL_LOGS

__all__ = ["Logger"]

_log = logging.getLogger("iii.logger")


def _ids(trace_id: str | None, span_id: str | None) -> tuple[str | None, str | None]:
    """The ids a record carries: the given ones, else the current span's or invocation's."""
    if trace_id is not None and span_id is not None:
        return trace_id, span_id
    return trace_id or current_trace_id(), span_id or current_span_id()


class Logger:
    """Structured logs: ``info/warn/error/debug(message, data=None)`` (module docstring).

    ``trace_id`` / ``span_id`` (hex) pin the ids of every record; unset, each record takes
    those of the span or invocation current when it logs.
    """

    def __init__(self, trace_id: str | None = None, service_name: str | None = None,
                 span_id: str | None = None) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.service_name = service_name or ""

    def _emit(self, level: int, message: str, data: Any) -> None:
        otel = OTEL_LOGS[0]
        if not otel and not _log.isEnabledFor(level):
            return
        trace_id, span_id = _ids(self.trace_id, self.span_id)
        if _log.isEnabledFor(level):
            _log.log(level, "[%s] %s", self.service_name, message,
                     extra={"data": data, "trace_id": trace_id, "span_id": span_id},
                     stacklevel=3)
        if otel:
            from iii_rx.telemetry import logs

            attributes: dict[str, Any] = {"service.name": self.service_name}
            if data is not None:
                attributes["log.data"] = data
            logs.emit(level, message, attributes, trace_id, span_id, logger_name="iii.logger")

    def info(self, message: str, data: Any = None) -> None:
        self._emit(logging.INFO, message, data)

    def warn(self, message: str, data: Any = None) -> None:
        self._emit(logging.WARNING, message, data)

    def error(self, message: str, data: Any = None) -> None:
        self._emit(logging.ERROR, message, data)

    def debug(self, message: str, data: Any = None) -> None:
        self._emit(logging.DEBUG, message, data)
