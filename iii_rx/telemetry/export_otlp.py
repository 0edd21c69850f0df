"""OTLP JSON of finished spans, log records and metrics, as the engine's ``/otel`` socket reads it.

The engine reads the OTLP/JSON export requests (``resourceSpans``, ``resourceLogs``,
``resourceMetrics``) with one difference from the protobuf JSON mapping: trace and span ids are
lower-case hex, not base64. Numbers that are 64-bit in protobuf (times, counts, int values) are
strings. One binary frame carries one request behind a 4-byte tag (:data:`SPANS`,
:data:`LOGS`, :data:`METRICS`).

Every function here takes the OpenTelemetry SDK's own objects (``ReadableSpan``, the log
processor's records, ``MetricsData``) and returns the JSON bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.trace import SpanKind, StatusCode

from iii_rx.telemetry.histograms import SCOPE
from iii_rx.telemetry.ids import hex_id

__all__ = ["LOGS", "METRICS", "SPANS", "logs_json", "metrics_json", "spans_json"]

_esc = json.encoder.encode_basestring

SPANS = b"OTLP"
"""Tag of a frame of spans (an ``ExportTraceServiceRequest``)."""
LOGS = b"LOGS"
"""Tag of a frame of log records (an ``ExportLogsServiceRequest``)."""
METRICS = b"MTRC"
"""Tag of a frame of metrics (an ``ExportMetricsServiceRequest``)."""


def any_value(value: Any) -> dict[str, Any]:
    """An OTLP ``AnyValue`` for a Python attribute value."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value} if math.isfinite(value) else {"stringValue": repr(value)}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, (bytes, bytearray)):
        return {"stringValue": bytes(value).hex()}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": key_values(value)}}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    return {"stringValue": str(value)}


def key_values(attributes: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """OTLP ``KeyValue`` list of an attribute mapping (``[]`` for none)."""
    if not attributes:
        return []
    return [{"key": str(k), "value": any_value(v)} for k, v in attributes.items()]


# Spans and log records are the volume: their JSON is written as text (two to four times
# faster than building dicts for json.dumps); metrics, one frame a minute, use dicts.

_dumps = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode


_TRUE = '{"boolValue":true}'
_FALSE = '{"boolValue":false}'


def _text_value(value: Any) -> str:
    """:func:`any_value` of ``value`` as JSON text."""
    kind = type(value)
    if kind is str:
        return '{"stringValue":' + _esc(value) + "}"
    if kind is bool:
        return _TRUE if value else _FALSE
    if kind is int:
        return f'{{"intValue":"{value}"}}'
    if kind is float and math.isfinite(value):
        return '{"doubleValue":' + repr(value) + "}"
    if kind is float:  # JSON has no non-finite number: sent as text
        return '{"stringValue":' + _esc(repr(value)) + "}"
    return _dumps(any_value(value))


_KEY_TEXT: dict[str, str] = {}
"""``{"key":<key>,"value":`` of the attribute keys met so far (a process has a few dozen)."""
_KEY_TEXT_MAX = 4096


def _key_text(key: Any) -> str:
    found = '{"key":' + _esc(str(key)) + ',"value":'
    if type(key) is str and len(_KEY_TEXT) < _KEY_TEXT_MAX:
        _KEY_TEXT[key] = found
    return found


def _text_kvs(attributes: Mapping[str, Any] | None) -> str:
    """:func:`key_values` as JSON text. The volume of a span's text (about ten attributes
    with its events'): the keys are written once per process, and the text and boolean
    values (nearly all of them) without a call."""
    if not attributes:
        return "[]"
    known = _KEY_TEXT.get
    parts = []
    for key, value in attributes.items():  # each item's text built in one step
        kind = type(value)
        if kind is str:
            parts.append(f'{known(key) or _key_text(key)}{{"stringValue":{_esc(value)}}}}}')
        elif kind is bool:
            parts.append(f'{known(key) or _key_text(key)}{_TRUE if value else _FALSE}}}')
        else:
            parts.append(f'{known(key) or _key_text(key)}{_text_value(value)}}}')
    return f'[{",".join(parts)}]'


def _scope(scope: Any) -> str:
    return ('{"name":' + _esc(getattr(scope, "name", "") or "") + ',"version":'
            + _esc(getattr(scope, "version", "") or "") + "}")


def _resource(resource: Any) -> str:
    return '{"attributes":' + _text_kvs(getattr(resource, "attributes", None)) + "}"


def _grouped(items: Iterable[Any], resource_of: Any, scope_of: Any
             ) -> list[tuple[Any, list[tuple[Any, list[Any]]]]]:
    """``items`` grouped by resource, then by instrumentation scope, in first-seen order (an
    item with the resource and scope objects of the one before joins its group at once: a
    batch comes in long runs of them)."""
    groups: dict[int, tuple[Any, dict[tuple[str, str], tuple[Any, list[Any]]]]] = {}
    last: tuple[Any, Any] | None = None
    group: list[Any] = []
    for item in items:
        resource = resource_of(item)
        scope = scope_of(item)
        if last is None or resource is not last[0] or scope is not last[1]:
            by_scope = groups.setdefault(id(resource), (resource, {}))[1]
            key = (getattr(scope, "name", "") or "", getattr(scope, "version", "") or "")
            group = by_scope.setdefault(key, (scope, []))[1]
            last = (resource, scope)
        group.append(item)
    return [(resource, list(by_scope.values())) for resource, by_scope in groups.values()]


def _request(field: str, scopes_field: str, items_field: str, item_text: Any,
             groups: list[tuple[Any, list[tuple[Any, list[Any]]]]]) -> bytes:
    return ('{"' + field + '":[' + ",".join(
        '{"resource":' + _resource(resource) + ',"' + scopes_field + '":[' + ",".join(
            '{"scope":' + _scope(scope) + ',"' + items_field + '":['
            + ",".join(map(item_text, items)) + "]}"
            for scope, items in scopes) + "]}"
        for resource, scopes in groups) + "]}").encode()


_KIND = {id(kind): kind.value + 1 for kind in SpanKind}
"""The OTLP number of each span kind, by the member's identity (an enum member hashes in
Python; the OTLP kinds count from 1, INTERNAL, the Python enum from 0)."""
_CODE = {id(code): code.value for code in StatusCode}


def _span(span: Any) -> str:
    ctx = span.context
    parent = span.parent
    status = span.status
    events = ",".join([
        f'{{"name":{_esc(e.name)},"timeUnixNano":"{e.timestamp or 0}",'
        f'"attributes":{_text_kvs(e.attributes)}}}' for e in span.events])
    links = span.links
    links_text = ",".join([
        f'{{"traceId":"{hex_id(link.context.trace_id, 32)}",'
        f'"spanId":"{hex_id(link.context.span_id, 16)}",'
        f'"attributes":{_text_kvs(link.attributes)}}}' for link in links]) if links else ""
    parent_id = (f'"parentSpanId":"{hex_id(parent.span_id, 16)}",'
                 if parent is not None and parent.span_id else "")
    return (
        f'{{"traceId":"{hex_id(ctx.trace_id, 32)}","spanId":"{hex_id(ctx.span_id, 16)}",'
        f'{parent_id}"name":{_esc(span.name)},"kind":{_KIND[id(span.kind)]},'
        f'"startTimeUnixNano":"{span.start_time or 0}","endTimeUnixNano":"{span.end_time or 0}",'
        f'"attributes":{_text_kvs(span.attributes)},"events":[{events}],"links":[{links_text}],'
        f'"status":{{"code":{_CODE[id(status.status_code)]},'
        f'"message":{_esc(status.description or "")}}},"flags":{int(ctx.trace_flags)}}}')


def spans_json(spans: Sequence[Any]) -> bytes:
    """An ``ExportTraceServiceRequest`` of finished ``ReadableSpan``s."""
    return _request("resourceSpans", "scopeSpans", "spans", _span,
                    _grouped(spans, lambda s: s.resource, lambda s: s.instrumentation_scope))


def _record(item: Any) -> Any:
    """The ``LogRecord`` of a processor's item (``ReadableLogRecord`` or the older
    ``LogData``)."""
    return getattr(item, "log_record", item)


def _log(item: Any) -> str:
    record = _record(item)
    severity = getattr(record, "severity_number", None)
    body = getattr(record, "body", None)
    trace_id = getattr(record, "trace_id", None) or 0
    span_id = getattr(record, "span_id", None) or 0
    ids = ((f',"traceId":"{trace_id:032x}"' if trace_id else "")
           + (f',"spanId":"{span_id:016x}"' if span_id else ""))
    observed = getattr(record, "observed_timestamp", None) or 0
    # A record emitted without a time gets its observed time: engines keep logs by age, and
    # "0" is 1970.
    return (
        f'{{"timeUnixNano":"{getattr(record, "timestamp", None) or observed}",'
        f'"observedTimeUnixNano":"{observed}",'
        f'"severityNumber":{int(getattr(severity, "value", 0) or 0)},'
        f'"severityText":{_esc(getattr(record, "severity_text", None) or "")},'
        f'"body":{_text_value("" if body is None else body)},'
        f'"attributes":{_text_kvs(getattr(record, "attributes", None))}{ids}}}')


def logs_json(batch: Sequence[Any]) -> bytes:
    """An ``ExportLogsServiceRequest`` of the records a log processor exports."""
    return _request("resourceLogs", "scopeLogs", "logRecords", _log, _grouped(
        batch,
        lambda i: getattr(i, "resource", None) or getattr(_record(i), "resource", None),
        lambda i: getattr(i, "instrumentation_scope", None)))


def _point(point: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "attributes": key_values(getattr(point, "attributes", None)),
        "startTimeUnixNano": str(getattr(point, "start_time_unix_nano", 0) or 0),
        "timeUnixNano": str(getattr(point, "time_unix_nano", 0) or 0),
    }
    if hasattr(point, "bucket_counts"):
        out.update(count=str(point.count), sum=point.sum,
                   bucketCounts=[str(c) for c in point.bucket_counts],
                   explicitBounds=list(point.explicit_bounds), min=point.min, max=point.max)
    elif hasattr(point, "value"):
        if isinstance(point.value, int) and not isinstance(point.value, bool):
            out["asInt"] = str(point.value)
        else:
            out["asDouble"] = float(point.value)
    return out


def _metric(metric: Any) -> dict[str, Any]:
    data = metric.data
    points = [_point(p) for p in data.data_points]
    out: dict[str, Any] = {"name": metric.name, "description": metric.description or "",
                           "unit": metric.unit or ""}
    temporality = getattr(data, "aggregation_temporality", None)
    kind = type(data).__name__
    if "Histogram" in kind:
        out["histogram"] = {"dataPoints": points,
                            "aggregationTemporality": int(getattr(temporality, "value", 0))}
    elif kind == "Sum":
        out["sum"] = {"dataPoints": points,
                      "aggregationTemporality": int(getattr(temporality, "value", 0)),
                      "isMonotonic": bool(data.is_monotonic)}
    else:
        out["gauge"] = {"dataPoints": points}
    return out


def metrics_json(data: Any, own: Sequence[Any] = (), resource: Any = None) -> bytes:
    """An ``ExportMetricsServiceRequest`` of the SDK's ``MetricsData``, with ``own``
    (``Metric`` s collected outside the SDK) in the :data:`SCOPE` scope of the first
    resource (or of ``resource`` when the SDK collected nothing)."""
    resources: list[dict[str, Any]] = [
        {"resource": {"attributes": key_values(getattr(rm.resource, "attributes", None))},
         "scopeMetrics": [
             {"scope": {"name": getattr(sm.scope, "name", "") or "",
                        "version": getattr(sm.scope, "version", "") or ""},
              "metrics": [_metric(m) for m in sm.metrics]}
             for sm in rm.scope_metrics]}
        for rm in data.resource_metrics]
    if own:
        if not resources:
            resources.append({"resource": {"attributes": key_values(
                getattr(resource, "attributes", None))}, "scopeMetrics": []})
        scopes = resources[0]["scopeMetrics"]
        scope = next((s for s in scopes if s["scope"]["name"] == SCOPE), None)
        if scope is None:
            scope = {"scope": {"name": SCOPE, "version": ""}, "metrics": []}
            scopes.append(scope)
        scope["metrics"].extend(_metric(m) for m in own)
    return _dumps({"resourceMetrics": resources}).encode()
