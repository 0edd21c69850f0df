"""HTTP responses of the REST API: the buffered envelope (docs/protocol.md §6.5.3), engine errors.

A handler's result becomes status, headers and body here: ``status_code`` is read first, then
``statusCode`` (the Rust engine reads only the first, docs/protocol.md §11 row 6); headers come as a
dict or as ``"Name: value"`` lines, invalid ones dropped; the body is JSON unless a ``Content-Type``
says otherwise. The engine's own answers use the envelope ``{"error": {"code", "message",
"error_id"?}}``. Also here: request headers (and the trace context they carry) as handlers see
them, and the permissive CORS preflight answer.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from iii_rx.engine.services import Trace

__all__ = [
    "NO_BODY_STATUS",
    "buffered_response",
    "encode_envelope",
    "error_response",
    "final_status",
    "headers_of",
    "invalid_status_response",
    "new_error_id",
    "preflight",
    "request_headers",
    "status_of",
    "trace_of",
]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN_IN_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # controls but TAB (RFC 9110)
_DROPPED_HEADERS = frozenset({"transfer-encoding", "connection", "keep-alive", "upgrade"})
NO_BODY_STATUS = frozenset({204, 304})


def new_error_id() -> str:
    """A short random hex id that ties an error answer to the engine's log line."""
    return secrets.token_hex(6)


def _json_response(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=_dumps(body), content_type="application/json")


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def error_response(status: int, code: str, message: str, *, error_id: str | None = None,
                   **extra: Any) -> web.Response:
    """The engine's error envelope ``{"error": {"code", "message", "error_id"?}, ...}``."""
    error: dict[str, Any] = {"code": code, "message": message}
    if error_id is not None:
        error["error_id"] = error_id
    return _json_response(status, {"error": error, **extra})


def _valid_header(name: Any, value: Any) -> bool:
    return (isinstance(name, str) and isinstance(value, str) and bool(_TOKEN.fullmatch(name))
            and _FORBIDDEN_IN_VALUE.search(value) is None)


def headers_of(value: Any) -> list[tuple[str, str]]:
    """Response headers from a dict or from ``"Name: value"`` lines; invalid ones dropped."""
    pairs: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        pairs = [(k, v) for k, v in value.items() if isinstance(v, str)]
    elif isinstance(value, list):
        for line in value:
            if isinstance(line, str) and ":" in line:
                name, _, text = line.partition(":")
                pairs.append((name.strip(), text.strip()))
    return [(k, v) for k, v in pairs
            if _valid_header(k, v) and k.lower() not in _DROPPED_HEADERS]


def _status_of(result: Mapping[str, Any]) -> int:
    """``status_code`` then ``statusCode`` (as the Rust engine, which reads only the first), 200
    when absent or outside 100-999 (what the Rust engine's HTTP library can send: 600-999 go
    out as given); 1xx is kept so that callers refuse it (it is not a final status, see
    :func:`final_status`)."""
    for key in ("status_code", "statusCode"):  # status_code first, as the Rust engine
        value = result.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value if 100 <= value <= 999 else 200
    return 200


def encode_envelope(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body bytes of a buffered response envelope (docs/protocol.md §6.5.3)."""
    envelope: Mapping[str, Any] = result if isinstance(result, Mapping) else {}
    status = _status_of(envelope)
    headers = [(k, v) for k, v in headers_of(envelope.get("headers"))
               if k.lower() != "content-length"]
    body = envelope.get("body", {})
    content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
    if content_type is None:
        headers.append(("Content-Type", "application/json"))
        data = _dumps(body)
    elif isinstance(body, str):
        data = body.encode()
    elif body is None:
        data = b""
    else:
        data = _dumps(body)
    return status, headers, data


def final_status(status: int) -> bool:
    """Whether ``status`` may end a request: 1xx are interim answers, and sending one as the
    response leaves the HTTP client waiting for a final one forever."""
    return status >= 200


def invalid_status_response(status: int, error_id: str) -> web.Response:
    """The engine's 500 for a handler that answered a 1xx status."""
    return error_response(500, "INVALID_STATUS", f"the handler answered status {status}, "
                          "which is not a final HTTP status (200-999)", error_id=error_id)


def buffered_response(result: Any, head_only: bool) -> web.Response:
    """The aiohttp response of a buffered envelope (no body for HEAD, 204, 304).

    The caller checks :func:`final_status` first (``status_of``)."""
    status, headers, data = encode_envelope(result)
    response = web.Response(status=status)
    for name, value in headers:
        response.headers.add(name, value)
    if status not in NO_BODY_STATUS and not head_only:
        response.body = data
    return response


def status_of(result: Any) -> int:
    """The status a buffered envelope asks for (see :func:`encode_envelope`)."""
    return _status_of(result) if isinstance(result, Mapping) else 200


def request_headers(request: web.BaseRequest) -> dict[str, str]:
    """Lower-case names, one value per name (the last), non-UTF-8 values as ``""``."""
    headers: dict[str, str] = {}
    for name, value in request.raw_headers:
        try:
            headers[name.decode("latin-1").lower()] = value.decode("utf-8")
        except UnicodeDecodeError:
            headers[name.decode("latin-1").lower()] = ""
    return headers


_TRACEPARENT = re.compile("[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
"""A W3C ``traceparent`` (version ``ff`` is invalid; all-zero ids too)."""
_BAGGAGE_MAX = 8192
"""The W3C limit of a ``baggage`` header, in bytes."""


def trace_of(headers: Mapping[str, str]) -> Trace:
    """The trace context a request's headers carry, as far as it is valid: a ``traceparent``
    that parses and a printable ASCII ``baggage`` within the W3C limit go on, anything else
    is left out (a peer's header must not reach a frame as it came)."""
    traceparent = headers.get("traceparent")
    if traceparent is not None and (_TRACEPARENT.fullmatch(traceparent) is None
                                    or traceparent.startswith("ff")):
        traceparent = None
    baggage = headers.get("baggage")
    if baggage is not None and not (len(baggage) <= _BAGGAGE_MAX and baggage.isascii()
                                    and baggage.isprintable()):
        baggage = None
    return traceparent, baggage


def preflight(request: web.BaseRequest) -> web.Response:
    """Permissive CORS preflight answer (the Rust engine's default)."""
    wanted_headers = request.headers.get("Access-Control-Request-Headers", "*")
    return web.Response(status=200, headers={
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": request.headers.get("Access-Control-Request-Method",
                                                            "*"),
        "Access-Control-Allow-Headers": wanted_headers,
        "Access-Control-Max-Age": "600",
    })
