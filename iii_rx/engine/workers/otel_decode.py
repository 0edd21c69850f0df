"""What a ``/otel`` frame carries, as the Rust engine's observability worker stores it.

A frame is a 4-byte tag and an OTLP/JSON export request with hex ids (as the official SDKs
send it): ``OTLP`` spans, ``LOGS`` log records, ``MTRC`` metrics. :func:`decode_frame` turns
one into ``(tag, records)``, each record a JSON object shaped like the Rust engine's answers:

* a span: ``trace_id``, ``span_id``, ``parent_span_id``, ``name``, ``start_time_unix_nano``,
  ``end_time_unix_nano``, ``status`` (``ok``/``error``/``unset``), ``status_description``,
  ``attributes`` (``[key, value]`` string pairs), ``service_name``, ``events``, ``links``,
  ``instrumentation_scope_name``/``_version``, ``flags`` (plus ``kind``, the OTLP number);
* a log entry: the fields of the ``log`` trigger's payload (see
  :mod:`~iii_rx.engine.workers.logs`);
* a metric: ``name``, ``description``, ``unit``, ``metric_type``
  (``counter``/``gauge``/``histogram``/``updowncounter``), ``data_points``, ``service_name``,
  ``timestamp_unix_nano`` and the scope.

Malformed input raises :class:`ValueError` (the caller drops the frame and logs one line).
"""

from __future__ import annotations

import json
from typing import Any

from iii_rx.engine.json_bounds import loads_bounded

__all__ = ["TAGS", "decode_frame"]

TAGS = (b"OTLP", b"LOGS", b"MTRC")
_STATUS = {1: "ok", 2: "error"}


def _int(value: Any) -> int:
    """An OTLP 64-bit number (a JSON number or a decimal string)."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise ValueError("a boolean where a number was expected")
    return int(value)


def _value(value: Any) -> Any:
    """The plain JSON value of an OTLP ``AnyValue``."""
    if not isinstance(value, dict):
        return value
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return _int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [_value(v) for v in (value["arrayValue"] or {}).get("values") or []]
    if "kvlistValue" in value:
        return {kv.get("key", ""): _value(kv.get("value"))
                for kv in (value["kvlistValue"] or {}).get("values") or []}
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def _text(value: Any) -> str:
    plain = _value(value)
    if isinstance(plain, str):
        return plain
    if isinstance(plain, bool):
        return "true" if plain else "false"
    if isinstance(plain, (dict, list)):
        return json.dumps(plain, separators=(",", ":"))
    return "" if plain is None else str(plain)


def _pairs(attributes: Any) -> list[list[str]]:
    """``[[key, value-as-text], ...]`` of an OTLP ``KeyValue`` list."""
    return [[str(kv.get("key", "")), _text(kv.get("value"))] for kv in attributes or []]


def _mapping(attributes: Any) -> dict[str, Any]:
    return {str(kv.get("key", "")): _value(kv.get("value")) for kv in attributes or []}


def _service(resource: Any) -> tuple[str, dict[str, Any]]:
    attrs = _mapping((resource or {}).get("attributes"))
    name = attrs.get("service.name")
    return (name if isinstance(name, str) and name else "unknown"), attrs


def _scopes(request: dict[str, Any], resources: str, scopes: str, items: str
            ) -> list[tuple[str, dict[str, Any], dict[str, Any], list[Any]]]:
    """``(service_name, resource attributes, scope, items)`` of every scope of a request."""
    out = []
    for group in request.get(resources) or []:
        service, resource = _service(group.get("resource"))
        for scope_group in group.get(scopes) or []:
            out.append((service, resource, scope_group.get("scope") or {},
                        scope_group.get(items) or []))
    return out


def _span(span: dict[str, Any], service: str, scope: dict[str, Any]) -> dict[str, Any]:
    status = span.get("status") or {}
    code = _STATUS.get(_int(status.get("code")), "unset")
    parent = span.get("parentSpanId") or None
    if parent is not None and set(parent) <= {"0"}:
        parent = None
    out: dict[str, Any] = {
        "trace_id": str(span["traceId"]).lower(),
        "span_id": str(span["spanId"]).lower(),
        "parent_span_id": parent.lower() if parent else None,
        "name": str(span.get("name", "")),
        "kind": _int(span.get("kind")),
        "start_time_unix_nano": _int(span.get("startTimeUnixNano")),
        "end_time_unix_nano": _int(span.get("endTimeUnixNano")),
        "status": code,
        "attributes": _pairs(span.get("attributes")),
        "service_name": service,
        "events": [{"name": str(e.get("name", "")),
                    "timestamp_unix_nano": _int(e.get("timeUnixNano")),
                    "attributes": _pairs(e.get("attributes"))}
                   for e in span.get("events") or []],
        "links": [{"trace_id": str(link.get("traceId", "")), "span_id": str(link.get("spanId", "")),
                   "trace_state": link.get("traceState") or None,
                   "attributes": _pairs(link.get("attributes"))}
                  for link in span.get("links") or []],
        "instrumentation_scope_name": scope.get("name") or None,
        "instrumentation_scope_version": scope.get("version") or None,
    }
    if code == "error" and status.get("message"):
        out["status_description"] = str(status["message"])
    if span.get("flags") is not None:
        out["flags"] = _int(span["flags"])
    return out


def _log(record: dict[str, Any], service: str, resource: dict[str, Any],
         scope: dict[str, Any]) -> dict[str, Any]:
    body = _value(record.get("body"))
    return {
        "timestamp_unix_nano": _int(record.get("timeUnixNano")),
        "observed_timestamp_unix_nano": _int(record.get("observedTimeUnixNano")),
        "severity_number": _int(record.get("severityNumber")),
        "severity_text": str(record.get("severityText") or ""),
        "body": body if isinstance(body, str) else json.dumps(body),
        "attributes": _mapping(record.get("attributes")),
        "trace_id": record.get("traceId") or None,
        "span_id": record.get("spanId") or None,
        "resource": resource,
        "service_name": service,
        "instrumentation_scope_name": scope.get("name") or None,
        "instrumentation_scope_version": scope.get("version") or None,
    }


def _points(body: dict[str, Any], histogram: bool) -> list[dict[str, Any]]:
    out = []
    for point in body.get("dataPoints") or []:
        common = {"attributes": _pairs(point.get("attributes")),
                  "timestamp_unix_nano": _int(point.get("timeUnixNano"))}
        if histogram:
            out.append({"count": _int(point.get("count")), "sum": float(point.get("sum") or 0),
                        "bucket_counts": [_int(c) for c in point.get("bucketCounts") or []],
                        "explicit_bounds": [float(b) for b in point.get("explicitBounds") or []],
                        "min": point.get("min"), "max": point.get("max"), **common})
        else:
            value = point.get("asDouble", point.get("asInt", 0))
            out.append({"value": float(value), **common})
    return out


def _metric(metric: dict[str, Any], service: str, scope: dict[str, Any]) -> dict[str, Any]:
    if "histogram" in metric or "exponentialHistogram" in metric:
        kind, points = "histogram", _points(
            metric.get("histogram") or metric.get("exponentialHistogram") or {}, True)
    elif "sum" in metric:
        body = metric["sum"] or {}
        kind = "counter" if body.get("isMonotonic") else "updowncounter"
        points = _points(body, False)
    else:
        kind, points = "gauge", _points(metric.get("gauge") or {}, False)
    stamp = max((p["timestamp_unix_nano"] for p in points), default=0)
    return {"name": str(metric.get("name", "")),
            "description": str(metric.get("description") or ""),
            "unit": str(metric.get("unit") or ""), "metric_type": kind, "data_points": points,
            "service_name": service, "timestamp_unix_nano": stamp,
            "instrumentation_scope_name": scope.get("name") or None,
            "instrumentation_scope_version": scope.get("version") or None}


def decode_frame(frame: bytes | str) -> tuple[bytes, list[dict[str, Any]]]:
    """``(tag, records)`` of one ``/otel`` frame; :class:`ValueError` if it is not one."""
    raw = frame.encode() if isinstance(frame, str) else bytes(frame)
    tag = raw[:4]
    if tag not in TAGS:
        raise ValueError(f"unknown telemetry frame tag {tag!r}")
    try:  # bounded: nesting past the parser's depth raised RecursionError, and a lone
        # surrogate escape made records no answer could carry (the Rust engine refuses both)
        request = loads_bounded(raw[4:] or b"{}")
    except ValueError as exc:
        raise ValueError(f"{tag.decode()} frame is not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise ValueError(f"{tag.decode()} frame is not a JSON object")
    try:
        if tag == b"OTLP":
            return tag, [_span(s, service, scope)
                         for service, _, scope, spans in _scopes(request, "resourceSpans",
                                                                 "scopeSpans", "spans")
                         for s in spans]
        if tag == b"LOGS":
            return tag, [_log(r, service, resource, scope)
                         for service, resource, scope, records in _scopes(
                             request, "resourceLogs", "scopeLogs", "logRecords")
                         for r in records]
        return tag, [_metric(m, service, scope)
                     for service, _, scope, found in _scopes(request, "resourceMetrics",
                                                             "scopeMetrics", "metrics")
                     for m in found]
    except (KeyError, TypeError, AttributeError, OverflowError) as exc:  # Overflow: 1e999
        raise ValueError(f"malformed {tag.decode()} frame: {exc!r}") from None
