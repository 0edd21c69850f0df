"""The HTTP side of an invocation an ``http`` trigger made, as span attributes.

The engine hands such a function an ``ApiRequest``-shaped payload (``docs/http.md``); its
server span then carries the OpenTelemetry HTTP attributes the engine puts on its own
``HTTP`` span: ``http.request.method``, ``http.route`` (the registered path) and, from the
answer, ``http.response.status_code``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["http_attributes", "http_status", "is_http_request"]

_REQUEST_KEYS = frozenset(("method", "path", "headers", "query_params"))


def is_http_request(data: dict[str, Any]) -> bool:
    """Whether an invocation's payload is an HTTP request (its ``trigger`` says ``http``, or
    it has the request's keys)."""
    trigger = data.get("trigger")
    if isinstance(trigger, Mapping):
        return trigger.get("type") == "http"
    return data.keys() >= _REQUEST_KEYS


def http_attributes(data: Mapping[str, Any]) -> dict[str, Any]:
    """The request's span attributes."""
    attributes: dict[str, Any] = {}
    method = data.get("method")
    if isinstance(method, str):
        attributes["http.request.method"] = method.upper()
    route = data.get("path")
    if isinstance(route, str) and route:
        attributes["http.route"] = route
    return attributes


def http_status(result: Any) -> int | None:
    """The status code of a handler's answer (a mapping or an ``ApiResponse``), if any."""
    if isinstance(result, Mapping):
        status = result.get("status_code", result.get("statusCode"))
    else:
        status = getattr(result, "status_code", None)
    return status if isinstance(status, int) and not isinstance(status, bool) else None
