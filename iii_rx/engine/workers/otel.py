"""The engine's ``/otel`` intake: what workers export, kept in memory and served as the Rust
engine's observability worker serves it.

Workers (the official SDKs, iii_rx with ``otel=`` on) open a second websocket on ``/otel`` and
send tagged OTLP/JSON frames (:mod:`~iii_rx.engine.workers.otel_decode`). The server hands each
frame to :meth:`OtelWorker.intake` on the engine's loop, which keeps

* spans in a ring of the last ``max_spans`` (1000, the Rust engine's ``memory_max_spans``),
  decoded when read (:mod:`~iii_rx.engine.workers.span_store`), served by
  ``engine::traces::list``, ``engine::traces::tree`` and ``engine::traces::clear``;
* log records in the logs worker's store (``engine::logs::list`` and the ``log`` trigger see
  them like ``engine::log::*`` entries);
* metrics in a ring of the last ``max_metrics`` (10000) records, at most ``max_metrics_bytes``
  (64 MiB of the frames they came in) together, the ``sdk_metrics`` of
  ``engine::metrics::list``.

A frame that does not decode is dropped with one rate-limited warning (a frame of spans when
its spans are read); nothing a worker sends here can fail its socket. Answers follow the Rust
engine's shapes:

* ``engine::traces::list {trace_id?, trace_ids?, service_name?, name?, status?,
  min_duration_ms?, max_duration_ms?, start_time?, end_time?, sort_by?, sort_order?,
  attributes?, exclude_attributes?, include_internal?, search_all_spans?, offset?, limit?}`` →
  ``{"spans", "total", "offset", "limit", "storage"}``: root spans (no parent, or a parent
  not stored) unless ``search_all_spans``; times in Unix milliseconds; ``limit`` 100;
* ``engine::traces::tree {trace_id}`` → ``{"roots": [span + "children"], "storage"}``;
* ``engine::traces::clear {}`` → ``{"success": true}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from iii_rx.engine.logsafe import RateLimitedLog, printable
from iii_rx.engine.registry import CallContext
from iii_rx.engine.services import EngineServices
from iii_rx.engine.workers._common import (
    bad_input,
    count_or,
    optional_str,
    require_object,
    require_str,
)
from iii_rx.engine.workers.otel_decode import TAGS, decode_frame
from iii_rx.engine.workers.ring import Ring
from iii_rx.engine.workers.span_store import SpanStore

__all__ = ["OtelWorker", "level_of"]

WORKER_NAME = "iii-observability"
log = logging.getLogger("iii_rx.engine.otel")
_STORAGE = {"archive": "disabled", "completeness": "complete", "known_dropped_spans": 0,
            "physical_bytes": 0, "max_disk_bytes": 0, "last_error": None}


def level_of(severity_number: int) -> str:
    """The ``log`` trigger level of an OpenTelemetry severity number."""
    if severity_number >= 17:
        return "error"
    if severity_number >= 13:
        return "warn"
    if severity_number >= 9:
        return "info"
    if severity_number >= 5:
        return "debug"
    return "trace"


LogSink = Callable[[dict[str, Any], str, Any, int], Any]
"""``sink(entry, level, data, size)``: store a decoded log entry of about ``size`` bytes (the
logs worker's ``add_entry``)."""


class OtelWorker:
    """Engine extension: the ``/otel`` intake and the traces functions (module docstring)."""

    def __init__(self, log_sink: LogSink | None = None, *, max_spans: int = 1000,
                 max_metrics: int = 10_000, max_metrics_bytes: int = 64 * 1024 * 1024) -> None:
        self.log_sink = log_sink
        self._spans = SpanStore(max_spans, self._reject)
        self.metrics: Ring[dict[str, Any]] = Ring(max_metrics, max_metrics_bytes)
        self.frames = 0
        """Frames received (decoded or not)."""
        self.rejected = 0
        """Frames found not to decode (a frame of spans: when the spans are read)."""
        self._changed: asyncio.Event | None = None
        self._refusals = RateLimitedLog(log)
        """The engine's budget of these lines once started."""

    async def start(self, services: EngineServices) -> None:
        self._refusals = services.limited_log(log)
        services.add_worker(WORKER_NAME, "Logs: engine::log::* and the log trigger")
        for function_id, handler, description in (
                ("engine::traces::list", self._list, "List stored spans (root spans unless "
                                                     "search_all_spans)"),
                ("engine::traces::tree", self._tree, "One stored trace as a span tree"),
                ("engine::traces::clear", self._clear, "Drop every stored span")):
            services.add_function(function_id, handler, worker=WORKER_NAME,
                                  description=description, request_format={"type": "object"},
                                  inline=True)
        services.set_telemetry_sink(self.intake)

    async def stop(self) -> None:
        pass

    # ------------------------------------------------------------------ intake

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds, checked after each frame (tests and tools);
        :class:`asyncio.TimeoutError` after ``timeout`` seconds."""
        async def until() -> None:
            while not predicate():
                if self._changed is None:
                    self._changed = asyncio.Event()
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)

    @property
    def spans(self) -> deque[dict[str, Any]]:
        """The stored spans (the last ``max_spans``), oldest first."""
        return self._spans.records()

    def intake(self, frame: bytes | str) -> None:
        """Take one ``/otel`` frame (on the engine's loop)."""
        self.frames += 1
        if self._changed is not None:
            self._changed.set()
        raw = frame.encode() if isinstance(frame, str) else bytes(frame)
        if raw[:4] == TAGS[0]:  # spans: decoded when read
            self._spans.add(raw)
            return
        try:
            tag, records = decode_frame(raw)
        except ValueError as exc:
            self._reject(exc)
            return
        size = len(raw) // max(1, len(records))  # each record's share of its frame
        if tag == b"MTRC":
            for record in records:
                self.metrics.append(record, size)
        elif self.log_sink is not None:
            for entry in records:
                self.log_sink(entry, level_of(entry["severity_number"]), None, size)

    def _reject(self, error: ValueError) -> None:
        self.rejected += 1
        self._refusals.log(logging.WARNING, "otel", "dropped a telemetry frame: %s",
                           printable(str(error), 300))

    def sdk_metrics(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        """The stored metrics ``engine::metrics::list`` answers as ``sdk_metrics``
        (``metric_name``, ``start_time``/``end_time`` in Unix milliseconds)."""
        name = query.get("metric_name")
        start, end = query.get("start_time"), query.get("end_time")
        return [m for m in self.metrics
                if (name is None or m["name"] == name)
                and (start is None or end is None
                     or start * 1_000_000 <= m["timestamp_unix_nano"] <= end * 1_000_000)]

    # ------------------------------------------------------------------ queries

    async def _list(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        fid = "engine::traces::list"
        q = require_object(fid, data if data is not None else {})
        search_all = _flag(fid, q, "search_all_spans")
        include_internal = _flag(fid, q, "include_internal")
        offset = count_or(fid, q, "offset", 0)
        limit = count_or(fid, q, "limit", 100)
        trace_id = optional_str(fid, q, "trace_id")
        trace_ids = _strings(fid, q, "trace_ids")
        service = optional_str(fid, q, "service_name")
        name = optional_str(fid, q, "name")
        status = optional_str(fid, q, "status")
        attributes = _pairs_of(fid, q, "attributes")
        excluded = _pairs_of(fid, q, "exclude_attributes")
        min_ms, max_ms = _number(fid, q, "min_duration_ms"), _number(fid, q, "max_duration_ms")
        start, end = _number(fid, q, "start_time"), _number(fid, q, "end_time")
        spans = list(self.spans)
        if trace_id is not None:
            spans = [s for s in spans if s["trace_id"] == trace_id]
        elif trace_ids is not None:
            spans = [s for s in spans if s["trace_id"] in set(trace_ids)]
        present = {s["span_id"] for s in spans}
        if search_all:
            # A trace is listed when any of its spans matches the name / attributes.
            named = {s["trace_id"] for s in spans
                     if name is None or name.lower() in s["name"].lower()}
            tagged = {s["trace_id"] for s in spans if _has_all(s, attributes)}
        found = []
        for s in spans:
            if not search_all and s["parent_span_id"] in present:
                continue
            if not include_internal and _internal(s):
                continue
            if excluded and any(_has_all(s, [pair]) for pair in excluded):
                continue
            if service is not None and service.lower() not in s["service_name"].lower():
                continue
            if name is not None and (s["trace_id"] not in named if search_all
                                     else name.lower() not in s["name"].lower()):
                continue
            if status is not None and status.lower() not in s["status"]:
                continue
            ms = _duration_ms(s)
            if (min_ms is not None and ms < min_ms) or (max_ms is not None and ms > max_ms):
                continue
            if start is not None and s["end_time_unix_nano"] < start * 1_000_000:
                continue
            if end is not None and s["start_time_unix_nano"] > end * 1_000_000:
                continue
            if attributes and (s["trace_id"] not in tagged if search_all
                               else not _has_all(s, attributes)):
                continue
            found.append(s)
        sort_by = optional_str(fid, q, "sort_by") or "start_time"
        key: Callable[[dict[str, Any]], Any] = {
            "duration": _duration_ms, "duration_ms": _duration_ms,
            "service_name": lambda s: s["service_name"], "name": lambda s: s["name"],
        }.get(sort_by, lambda s: s["start_time_unix_nano"])
        ascending = (optional_str(fid, q, "sort_order") or "asc").lower() == "asc"
        found.sort(key=key, reverse=not ascending)
        return {"spans": found[offset:offset + limit], "total": len(found), "offset": offset,
                "limit": limit, "storage": dict(_STORAGE)}

    async def _tree(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        fid = "engine::traces::tree"
        trace_id = require_str(fid, require_object(fid, data), "trace_id")
        spans = sorted((s for s in self.spans if s["trace_id"] == trace_id),
                       key=lambda s: s["start_time_unix_nano"])
        nodes = {s["span_id"]: {**s, "children": []} for s in spans}
        roots = []
        for node in nodes.values():
            parent = nodes.get(node["parent_span_id"] or "")
            if parent is None or parent is node:
                roots.append(node)
            else:
                parent["children"].append(node)
        return {"roots": roots, "storage": dict(_STORAGE)}

    async def _clear(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        self._spans.clear()
        return {"success": True}


def _duration_ms(span: dict[str, Any]) -> float:
    end: int = span["end_time_unix_nano"] or time.time_ns()
    start: int = span["start_time_unix_nano"]
    return max(0, end - start) / 1_000_000


def _internal(span: dict[str, Any]) -> bool:
    return any((k == "iii.function.kind" and v == "internal")
               or (k == "function_id" and v.startswith("engine::"))
               for k, v in span["attributes"])


def _has_all(span: dict[str, Any], pairs: list[list[str]]) -> bool:
    attrs = span["attributes"]
    return all([k, v] in attrs for k, v in pairs)


def _flag(fid: str, q: dict[str, Any], field: str) -> bool:
    value = q.get(field)
    if value is not None and not isinstance(value, bool):
        raise bad_input(fid, f"field `{field}` must be a boolean")
    return bool(value)


def _number(fid: str, q: dict[str, Any], field: str) -> float | None:
    value = q.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_input(fid, f"field `{field}` must be a number")
    return float(value)


def _strings(fid: str, q: dict[str, Any], field: str) -> list[str] | None:
    value = q.get(field)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_input(fid, f"field `{field}` must be a list of strings")
    return value


def _pairs_of(fid: str, q: dict[str, Any], field: str) -> list[list[str]]:
    value = q.get(field)
    if value is None:
        return []
    if not isinstance(value, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
            for p in value):
        raise bad_input(fid, f"field `{field}` must be a list of [key, value] string pairs")
    return [list(p) for p in value]
