"""``OtelConfig``: the OpenTelemetry settings of a client, with the official SDK's fields.

``connect(otel=...)`` takes an :class:`OtelConfig`, a mapping of its fields, ``True`` (enabled
with the defaults) or ``None``/``False`` (off, the default: nothing is traced and the hot path
pays one ``if``). :func:`resolve_otel` turns any of these into the config in force, or ``None``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["OtelConfig", "OtelOption", "repr_hiding", "resolve_otel"]


@dataclass
class OtelConfig:
    """OpenTelemetry settings (docs/protocol.md §10.1); names and meanings are the official SDK's.

    ``enabled=None`` follows ``OTEL_ENABLED`` (on unless it says false/0/no/off). Spans go to
    the process's OpenTelemetry ``TracerProvider``; when none is configured, iii_rx installs
    one named after ``service_name`` (its exporter chosen by ``OTEL_TRACES_EXPORTER``:
    ``console``, ``otlp`` when ``opentelemetry-exporter-otlp`` is installed, else the
    engine), and ``iii.spans`` shows every span either way. With no exporter configured,
    spans, logs and metrics go to the engine's ``/otel`` socket
    (:mod:`iii_rx.telemetry.export`): ``engine_ws_url`` / ``engine_ws_headers`` say where
    and how (default: the client's URL and headers), the flush intervals, ``logs_batch_size``
    and ``metrics_export_interval_ms`` how often. ``fetch_instrumentation_enabled`` is
    accepted for compatibility.
    """

    enabled: bool | None = None
    service_name: str | None = None
    service_version: str | None = None
    service_namespace: str | None = None
    service_instance_id: str | None = None
    engine_ws_url: str | None = None
    fetch_instrumentation_enabled: bool = True
    spans_flush_interval_ms: int | None = None
    logs_enabled: bool | None = None
    logs_flush_interval_ms: int | None = None
    logs_batch_size: int | None = None
    metrics_enabled: bool = True
    metrics_export_interval_ms: int = 60000
    engine_ws_headers: dict[str, str] | None = None

    def __repr__(self) -> str:
        return repr_hiding(self, "engine_ws_headers")


def repr_hiding(config: Any, *header_fields: str) -> str:
    """The dataclass repr of ``config`` with the values of its ``header_fields`` (mappings of
    headers) hidden: their names help when reading a log, their values may be tokens. A field
    holding a config given as a mapping (``InitOptions(otel={...})``) has its
    ``engine_ws_headers`` hidden the same way."""
    shown = []
    for field in fields(config):
        value = getattr(config, field.name)
        if field.name in header_fields and isinstance(value, Mapping):
            value = _hidden(value)
        elif isinstance(value, Mapping) and isinstance(value.get("engine_ws_headers"), Mapping):
            value = {**value, "engine_ws_headers": _hidden(value["engine_ws_headers"])}
        shown.append(f"{field.name}={value!r}")
    return f"{type(config).__qualname__}({', '.join(shown)})"


def _hidden(headers: Mapping[str, Any]) -> dict[str, str]:
    return {name: "***" for name in headers}


OtelOption = OtelConfig | Mapping[str, Any] | bool | None
"""What ``connect(otel=...)`` accepts."""

_FIELDS = frozenset(f.name for f in fields(OtelConfig))


def resolve_otel(otel: Any) -> OtelConfig | None:
    """The config in force for ``otel`` (any object with OtelConfig's attributes counts, e.g.
    the official SDK's), or ``None`` when tracing is off; ``TypeError`` for anything else."""
    if otel is None or otel is False:
        return None
    if otel is True:
        config = OtelConfig(enabled=True)
    elif isinstance(otel, OtelConfig):
        config = otel
    elif isinstance(otel, Mapping):
        unknown = set(otel) - _FIELDS
        if unknown:
            raise TypeError(f"unknown OtelConfig fields: {sorted(unknown)}")
        config = OtelConfig(**otel)
    else:
        given = {name: getattr(otel, name) for name in _FIELDS if hasattr(otel, name)}
        if not given:  # a string, a number: not a config of any SDK
            raise TypeError(f"otel must be an OtelConfig, a mapping of its fields, True or "
                            f"None, not {type(otel).__name__} {otel!r}")
        config = OtelConfig(**given)
    enabled = config.enabled
    if enabled is None:
        enabled = os.environ.get("OTEL_ENABLED", "").strip().lower() not in {
            "false", "0", "no", "off"}
    return config if enabled else None
