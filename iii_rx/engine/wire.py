"""The engine's view of the hot-path frames, and its error bodies.

The invoke/result frames are written by :mod:`iii_rx.frame_text`, the one encoder that the
client uses too; here the engine keeps its argument order and its defaults: ``NaN`` is relayed
as the official SDK writes it (see ``docs/protocol.md``), a null result is left out, and
``action``/``namespace`` are never sent to handlers. Every other frame the engine sends is built
with :mod:`iii_rx.protocol` models.

Reading: :func:`read_hot` takes the two hot frames apart without building a model. It parses
with pydantic-core's JSON parser (the one :func:`iii_rx.protocol.decode` runs, so the same
depth limit, number and ``NaN`` handling) and accepts only frames whose fields have the plain
shapes the model would accept unchanged; anything else (an ``action``, an ``error``, a field of
the wrong type, another frame type) returns ``None`` and goes through the model, so every
refusal keeps its exact error. That skips the per-frame model validation, which cost four times
the parse.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic_core import from_json

from iii_rx.frame_text import dumps, result_text
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


class HotInvoke:
    """An ``invokefunction`` read by :func:`read_hot`: the attributes the router reads of an
    :class:`~iii_rx.protocol.InvokeFunction`, with no ``action`` (those take the model)."""

    __slots__ = ("baggage", "data", "function_id", "invocation_id", "metadata", "namespace",
                 "traceparent")
    action: Final = None

    def __init__(self, function_id: str, data: Any, invocation_id: str | None, metadata: Any,
                 traceparent: str | None, baggage: str | None, namespace: str | None) -> None:
        self.function_id = function_id
        self.data = data
        self.invocation_id = invocation_id
        self.metadata = metadata
        self.traceparent = traceparent
        self.baggage = baggage
        self.namespace = namespace


class HotResult:
    """An ``invocationresult`` without ``error`` read by :func:`read_hot` (the attributes of
    an :class:`~iii_rx.protocol.InvocationResult` the router reads)."""

    __slots__ = ("baggage", "function_id", "invocation_id", "result", "traceparent")
    error: Final = None

    def __init__(self, invocation_id: str, function_id: str, result: Any,
                 traceparent: str | None, baggage: str | None) -> None:
        self.invocation_id = invocation_id
        self.function_id = function_id
        self.result = result
        self.traceparent = traceparent
        self.baggage = baggage


_str = str


def read_hot(message: str | bytes) -> HotInvoke | HotResult | None:
    """The hot frame in ``message``, or ``None``: decode it with the model instead."""
    try:
        obj = from_json(message)
    except ValueError:
        return None
    if type(obj) is not dict:
        return None
    get = obj.get
    kind = get("type")
    tp = get("traceparent")
    bg = get("baggage")
    if (tp is not None and type(tp) is not _str) or (bg is not None and type(bg) is not _str):
        return None
    function_id = get("function_id")
    if type(function_id) is not _str:
        return None
    invocation_id = get("invocation_id")
    if kind == "invokefunction":
        namespace = get("namespace")
        if ((invocation_id is not None and type(invocation_id) is not _str)
                or (namespace is not None and type(namespace) is not _str)
                or get("action") is not None):
            return None
        return HotInvoke(function_id, get("data"), invocation_id, get("metadata"), tp, bg,
                         namespace)
    if kind == "invocationresult" and type(invocation_id) is _str and get("error") is None:
        return HotResult(invocation_id, function_id, get("result"), tp, bg)
    return None


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
    return frame_invoke_text(function_id, data, invocation_id=invocation_id, metadata=metadata,
                             traceparent=traceparent, baggage=baggage)


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
