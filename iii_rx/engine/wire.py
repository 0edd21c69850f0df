"""The engine's view of the hot-path frames, and its error bodies.

The invoke/result frames are written by :mod:`iii_rx.frame_text`, the one encoder that the
client uses too; here the engine keeps its argument order and its defaults: ``NaN`` is relayed
as the official SDK writes it (see ``docs/protocol.md``), a null result is left out, and
``action``/``namespace`` are never sent to handlers. Every other frame the engine sends is built
with :mod:`iii_rx.protocol` models.

Reading: :func:`~iii_rx.frame_text.read_hot` (shared with the client) takes the two hot
frames apart without building a model.
"""

from __future__ import annotations

from typing import Any

from iii_rx.frame_text import HotInvoke, HotResult, dumps, read_hot, result_text
from iii_rx.frame_text import invoke_text as frame_invoke_text

__all__ = [
    "HotInvoke",
    "HotResult",
    "dumps",
    "error_body",
    "function_not_found_message",
    "invoke_text",
    "json_kind",
    "read_hot",
    "result_text",
]


def error_body(code: str, message: str, stacktrace: str | None = None) -> dict[str, Any]:
    """``{"code", "message", "stacktrace"?}`` (docs/protocol.md §3.0)."""
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
    """An E→W ``invokefunction``: ``action`` and ``namespace`` are never sent to handlers.

    The common frame (no metadata, no trace headers) is written here with one call less; it is
    the text :func:`~iii_rx.frame_text.invoke_text` writes (fields in the same order)."""
    if metadata is None and traceparent is None and baggage is None:
        frame = {"type": "invokefunction", "function_id": function_id, "data": data}
        if invocation_id is not None:
            frame["invocation_id"] = invocation_id
        return dumps(frame)
    return frame_invoke_text(function_id, data, invocation_id=invocation_id, metadata=metadata,
                             traceparent=traceparent, baggage=baggage)


def function_not_found_message(
    function_id: str, namespace: str, elsewhere: list[str], refused: str | None = None
) -> str:
    """``Function {id} not found in namespace {ns}.`` plus where it exists (docs/protocol.md §4.3).

    ``refused`` names why a registration of this id was turned down, so that the
    caller of an HTTP-invoked function that could not be registered learns the reason.
    """
    message = f"Function {function_id} not found in namespace {namespace}."
    if elsewhere:
        message += f" It is registered in namespace(s): {', '.join(elsewhere)}."
    if refused:
        message += f" Its registration was refused: {refused}."
    return message


def json_kind(value: Any) -> str:
    """How a JSON value is named in error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
