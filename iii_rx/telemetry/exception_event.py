"""The attributes of a span's ``exception`` event, as the installed OpenTelemetry SDK writes
them (for :class:`~iii_rx.telemetry.leanspan.LeanSpan`, which must give exporters what the
SDK's own spans give them)."""

from __future__ import annotations

import traceback
from typing import Any

__all__ = ["exception_attributes"]


def exception_attributes(exception: BaseException, escaped: bool) -> dict[str, Any]:
    """``exception.type`` (module-qualified where the SDK qualifies it), ``.message``,
    ``.stacktrace`` (the exception's own, also outside the block that handled it) and
    ``.escaped``."""
    kind = type(exception)
    module = kind.__module__
    if not _names_module():  # the older SDKs: the class's bare name
        name = kind.__name__
    elif module and module != "builtins":
        name = f"{module}.{kind.__qualname__}"
    else:
        name = kind.__qualname__
    return {
        "exception.type": name,
        "exception.message": str(exception),
        "exception.stacktrace": "".join(traceback.format_exception(
            kind, exception, exception.__traceback__)),
        "exception.escaped": str(escaped),
    }


class _Probe(Exception):
    """What :func:`_names_module` records."""


_NAMES_MODULE: list[bool] = []


def _names_module() -> bool:
    """Whether the installed SDK's spans write ``exception.type`` with the class's module
    (1.25 on) rather than the bare class name (older ones); asked once, of the SDK's own
    ``record_exception``."""
    if not _NAMES_MODULE:
        from opentelemetry.sdk.trace import Span as SdkSpan

        recorded: dict[str, Any] = {}

        class Sink:
            def add_event(self, name: str, attributes: Any = None, timestamp: Any = None
                          ) -> None:
                recorded.update(attributes or {})

        try:
            SdkSpan.record_exception(Sink(), _Probe())  # type: ignore[arg-type]
        except Exception:  # another SDK's shape: the current SDKs' naming
            recorded["exception.type"] = "."
        _NAMES_MODULE.append("." in str(recorded.get("exception.type", ".")))
    return _NAMES_MODULE[0]
