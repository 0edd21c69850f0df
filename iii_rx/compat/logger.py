"""``Logger`` of the conventional API (``iii_helpers.observability.Logger``).

Until iii_rx exports OpenTelemetry logs (a later issue), records take the official SDK's
fallback path: the standard :mod:`logging` logger ``iii.logger``, message ``"[service] text"``,
the structured payload as the record attribute ``data``. Handlers and formatters written for
the official SDK's fallback see the same records. The reactive API's context-bound logger is
:class:`iii_rx.context.Logger`, a different class.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["Logger"]

_log = logging.getLogger("iii.logger")


class Logger:
    """Structured logs: ``info/warn/error/debug(message, data=None)``.

    ``trace_id`` / ``span_id`` (hex) pin the ids a telemetry backend would attach; they are
    kept on the logger for when export exists.
    """

    def __init__(self, trace_id: str | None = None, service_name: str | None = None,
                 span_id: str | None = None) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.service_name = service_name or ""

    def _emit(self, level: int, message: str, data: Any) -> None:
        if _log.isEnabledFor(level):
            _log.log(level, "[%s] %s", self.service_name, message, extra={"data": data},
                     stacklevel=3)

    def info(self, message: str, data: Any = None) -> None:
        self._emit(logging.INFO, message, data)

    def warn(self, message: str, data: Any = None) -> None:
        self._emit(logging.WARNING, message, data)

    def error(self, message: str, data: Any = None) -> None:
        self._emit(logging.ERROR, message, data)

    def debug(self, message: str, data: Any = None) -> None:
        self._emit(logging.DEBUG, message, data)
