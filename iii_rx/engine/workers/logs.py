"""The logs built-in worker: ``engine::log::*``, ``engine::logs::*`` and the ``log`` trigger type.

As in the Rust engine (its observability worker), it is always present:

* ``engine::log::trace|debug|info|warn|error {message, data?, trace_id?, span_id?,
  service_name?}`` → ``null``: record one log entry (severity 1, 5, 9, 13, 17), write it to
  the engine's own log (logger ``iii_rx.engine.logs``) and fire the ``log`` bindings;
* ``engine::logs::list {start_time?, end_time?, trace_id?, span_id?, severity_min?,
  severity_text?, offset?, limit?}`` (times in Unix milliseconds) → ``{"logs", "total",
  "query", "timestamp"}``, newest first, from the last ``max_logs`` entries kept in memory (at
  most ``max_logs_bytes`` together, 64 MiB: a frame may carry a large entry);
* ``engine::logs::clear {}`` → ``{"success": true}``.

A ``log`` binding takes ``{"level": "trace" | "debug" | "info" | "warn" | "error"}`` (exact
level; absent or ``"all"``: every entry) and receives the entry as the Rust engine sends it:
``timestamp_unix_nano``, ``observed_timestamp_unix_nano``, ``severity_number``,
``severity_text``, ``body``, ``attributes`` (the object given as ``data``), ``trace_id``,
``span_id``, ``resource``, ``service_name``, ``instrumentation_scope_name``,
``instrumentation_scope_version``.

Other parts of the engine (e.g. OTLP logs received from workers) add entries with
:meth:`LogsWorker.record`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from iii_rx.engine.config import DEFAULT_NAMESPACE, ENGINE_VERSION
from iii_rx.engine.logsafe import printable
from iii_rx.engine.registry import CallContext
from iii_rx.engine.services import EngineServices
from iii_rx.engine.triggers import Binding, BindingRefused, TriggerType
from iii_rx.engine.workers._common import (
    Fanout,
    config_object,
    config_str,
    optional_count,
    optional_str,
    require_object,
    require_str,
)
from iii_rx.engine.workers.ring import Ring

__all__ = ["LEVELS", "LOG_CONFIG_SCHEMA", "LogsWorker"]

WORKER_NAME = "iii-observability"
TRIGGER_TYPE = "log"
LEVELS: dict[str, tuple[str, int, int]] = {
    "trace": ("TRACE", 1, logging.DEBUG),
    "debug": ("DEBUG", 5, logging.DEBUG),
    "info": ("INFO", 9, logging.INFO),
    "warn": ("WARN", 13, logging.WARNING),
    "error": ("ERROR", 17, logging.ERROR),
}
"""Level name → severity text, OpenTelemetry severity number, Python logging level."""
LOG_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object", "properties": {"level": {"enum": [*LEVELS, "all"]}},
}
_LOG_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {"message": {"type": "string"}, "data": {}, "trace_id": {"type": "string"},
                   "span_id": {"type": "string"}, "service_name": {"type": "string"}},
    "required": ["message"],
}
_ENTRY_LOG = logging.getLogger("iii_rx.engine.logs")


class LogBindings:
    """The in-process provider of the ``log`` trigger type."""

    def __init__(self) -> None:
        self.levels: dict[str, str] = {}
        self.bindings: dict[str, Binding] = {}

    def bind(self, binding: Binding) -> None:
        level = config_str(TRIGGER_TYPE, config_object(TRIGGER_TYPE, binding.config), "level")
        level = (level or "all").lower()
        if level != "all" and level not in LEVELS:
            raise BindingRefused(f"log trigger level must be one of {', '.join(LEVELS)} or "
                                 f"all, got {level!r}")
        self.bindings[binding.id] = binding
        self.levels[binding.id] = level

    def unbind(self, binding: Binding) -> None:
        if self.bindings.get(binding.id) is binding:
            del self.bindings[binding.id]
            del self.levels[binding.id]


class LogsWorker:
    """Engine extension: the log functions, a bounded in-memory store and the ``log`` type."""

    def __init__(self, max_logs: int = 1000, max_logs_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_logs = max_logs
        self.entries: Ring[dict[str, Any]] = Ring(max_logs, max_logs_bytes)
        self.bindings = LogBindings()
        self._fanout: Fanout | None = None

    async def start(self, services: EngineServices) -> None:
        self._fanout = Fanout(services, "the logs worker")
        services.add_worker(WORKER_NAME, "Logs: engine::log::* and the log trigger")
        for level in LEVELS:
            services.add_function(
                f"engine::log::{level}", self._log_function(level), worker=WORKER_NAME,
                description=f"Record a {LEVELS[level][0]}-level log entry",
                request_format=_LOG_INPUT, response_format={"type": "null"}, inline=True)
        services.add_function("engine::logs::list", self._list, worker=WORKER_NAME,
                              description="List stored log entries, newest first",
                              request_format={"type": "object"}, inline=True)
        services.add_function("engine::logs::clear", self._clear, worker=WORKER_NAME,
                              description="Drop every stored log entry",
                              request_format={"type": "object"}, inline=True)
        services.add_function("engine::health::check", self._health, worker=WORKER_NAME,
                              description="Engine health: status, components, timestamp, "
                                          "version", request_format={"type": "object"},
                              inline=True)
        services.add_trigger_type(TriggerType(
            TRIGGER_TYPE, DEFAULT_NAMESPACE, "Log entries as they are recorded",
            provider=self.bindings, worker_name=WORKER_NAME,
            trigger_request_format=LOG_CONFIG_SCHEMA, call_request_format={"type": "object"}))

    async def stop(self) -> None:
        fanout, self._fanout = self._fanout, None
        if fanout is not None:
            await fanout.aclose()

    # ------------------------------------------------------------------ recording

    def record(self, level: str, message: str, *, data: Any = None,
               trace_id: str | None = None, span_id: str | None = None,
               service_name: str | None = None) -> dict[str, Any]:
        """Store one entry, write it to the engine's log, fire the matching bindings."""
        severity_text, severity_number, _ = LEVELS[level]
        now = time.time_ns()
        entry = {
            "timestamp_unix_nano": now,
            "observed_timestamp_unix_nano": now,
            "severity_number": severity_number,
            "severity_text": severity_text,
            "body": message,
            "attributes": dict(data) if isinstance(data, dict) else {},
            "trace_id": trace_id,
            "span_id": span_id,
            "resource": {},
            "service_name": service_name or "unknown",
            "instrumentation_scope_name": "iii",
            "instrumentation_scope_version": ENGINE_VERSION,
        }
        return self.add_entry(entry, level, data)

    def add_entry(self, entry: dict[str, Any], level: str, data: Any = None,
                  size: int | None = None) -> dict[str, Any]:
        """Store a complete entry (e.g. one a worker exported on ``/otel``) of ``level`` and
        about ``size`` bytes (``None``: measured), write it to the engine's log, fire the
        matching bindings."""
        py_level = LEVELS[level][2]
        self.entries.append(entry, size if size is not None else _size_of(entry))
        if _ENTRY_LOG.isEnabledFor(py_level):
            shown = data if data is not None else (entry["attributes"] or None)
            _ENTRY_LOG.log(py_level, "[%s] %s%s", printable(entry["service_name"]),
                           printable(entry["body"], 2000),
                           f" {printable(shown, 2000)}" if shown is not None else "")
        fanout = self._fanout
        if fanout is not None and self.bindings.bindings:
            for binding_id, binding in list(self.bindings.bindings.items()):
                wanted = self.bindings.levels[binding_id]
                if wanted == "all" or wanted == level:
                    fanout.fire(binding, entry)
        return entry

    def _log_function(self, level: str) -> Any:
        function_id = f"engine::log::{level}"

        async def log_entry(data: Any, ctx: CallContext) -> None:
            data = require_object(function_id, data)
            self.record(level, require_str(function_id, data, "message"),
                        data=data.get("data"),
                        trace_id=optional_str(function_id, data, "trace_id"),
                        span_id=optional_str(function_id, data, "span_id"),
                        service_name=optional_str(function_id, data, "service_name"))

        return log_entry

    # ------------------------------------------------------------------ queries

    async def _list(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        fid = "engine::logs::list"
        query = require_object(fid, data if data is not None else {})
        ints = {name: optional_count(fid, query, name)
                for name in ("start_time", "end_time", "severity_min", "offset", "limit")}
        trace_id = optional_str(fid, query, "trace_id")
        span_id = optional_str(fid, query, "span_id")
        severity_text = optional_str(fid, query, "severity_text")
        start, end = ints["start_time"], ints["end_time"]
        found = [
            e for e in self.entries
            if (trace_id is None or e["trace_id"] == trace_id)
            and (span_id is None or e["span_id"] == span_id)
            and (ints["severity_min"] is None or e["severity_number"] >= ints["severity_min"])
            and (severity_text is None or e["severity_text"].lower() == severity_text.lower())
            and (start is None or e["timestamp_unix_nano"] >= start * 1_000_000)
            and (end is None or e["timestamp_unix_nano"] <= end * 1_000_000)
        ]
        found.sort(key=lambda e: e["timestamp_unix_nano"], reverse=True)
        offset = ints["offset"] or 0
        limit = ints["limit"]
        page = found[offset:] if limit is None else found[offset:offset + limit]
        echo = {"trace_id": trace_id, "span_id": span_id, "severity_min": ints["severity_min"],
                "severity_text": severity_text, "start_time": start, "end_time": end,
                "offset": ints["offset"], "limit": limit}
        return {"logs": page, "total": len(found), "query": echo,
                "timestamp": time.time_ns() // 1_000_000}

    async def _clear(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        self.entries.clear()
        return {"success": True}

    async def _health(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        """The Rust engine's health answer: the engine answering is the health; the
        telemetry components we do not run are ``disabled``."""
        def component(status: str, details: Any = None) -> dict[str, Any]:
            return {"status": status, "details": details}

        return {
            "status": "healthy",
            "components": {"otel": component("disabled"), "metrics": component("disabled"),
                           "logs": component("healthy", {"stored": len(self.entries),
                                                         "max": self.max_logs}),
                           "spans": component("disabled")},
            "timestamp": time.time_ns() // 1_000_000,
            "version": ENGINE_VERSION,
        }



def _size_of(entry: dict[str, Any]) -> int:
    """About how many bytes ``entry`` holds (its JSON's length)."""
    try:
        return len(json.dumps(entry, default=str))
    except (ValueError, RecursionError):  # not from a frame: an engine part's own entry
        return 1024
