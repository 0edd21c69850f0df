"""Text of the frames on the engine's hot path, and the engine's error bodies.

The invoke/result relay is the engine's busiest code, so the two frames it builds for every
call are written straight from dicts with the C JSON encoder (about as fast as
:func:`iii_rx.protocol.encode` on a prebuilt model, and without building the model first).
Compact separators and non-ASCII kept as is, like the official SDK; ``NaN`` stays ``NaN``,
as the SDK writes it (spec 5.4). Every other frame the engine sends is built with
:mod:`iii_rx.protocol` models.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "dumps",
    "error_body",
    "function_not_found_message",
    "invoke_text",
    "result_text",
]

dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
"""Compact JSON text of a value (the encoding of every frame the engine builds here)."""


def error_body(code: str, message: str, stacktrace: str | None = None) -> dict[str, Any]:
    """``{"code", "message", "stacktrace"?}`` (spec 3.0)."""
    body: dict[str, Any] = {"code": code, "message": message}
    if stacktrace is not None:
        body["stacktrace"] = stacktrace
    return body


def invoke_text(
    invocation_id: str | None,
    function_id: str,
    data: Any,
    metadata: Any = None,
    traceparent: str | None = None,
    baggage: str | None = None,
) -> str:
    """An E→W ``invokefunction``: ``action`` and ``namespace`` are never sent to handlers."""
    frame: dict[str, Any] = {"type": "invokefunction", "function_id": function_id, "data": data}
    if invocation_id is not None:
        frame["invocation_id"] = invocation_id
    if metadata is not None:
        frame["metadata"] = metadata
    if traceparent is not None:
        frame["traceparent"] = traceparent
    if baggage is not None:
        frame["baggage"] = baggage
    return dumps(frame)


def result_text(
    invocation_id: str,
    function_id: str,
    result: Any = None,
    error: dict[str, Any] | None = None,
    traceparent: str | None = None,
    baggage: str | None = None,
) -> str:
    """An ``invocationresult``; ``result`` is left out when it is null (as the Rust engine)."""
    frame: dict[str, Any] = {
        "type": "invocationresult",
        "invocation_id": invocation_id,
        "function_id": function_id,
    }
    if error is not None:
        frame["error"] = error
    elif result is not None:
        frame["result"] = result
    if traceparent is not None:
        frame["traceparent"] = traceparent
    if baggage is not None:
        frame["baggage"] = baggage
    return dumps(frame)


def function_not_found_message(
    function_id: str, namespace: str, elsewhere: list[str], refused: str | None = None
) -> str:
    """Spec 4.3: ``Function {id} not found in namespace {ns}.`` plus where it does exist.

    ``refused`` names why a registration of this id was turned down (DECISIONS 8), so that the
    caller of an HTTP-invoked function that could not be registered learns the reason.
    """
    message = f"Function {function_id} not found in namespace {namespace}."
    if elsewhere:
        message += f" It is registered in namespace(s): {', '.join(elsewhere)}."
    if refused:
        message += f" Its registration was refused: {refused}."
    return message
