"""Results and invocations from the engine that fail validation but can still be acted on.

A newer or sloppier engine may send an ``invocationresult`` or an ``invokefunction`` with a
field this client does not need in a shape it does not expect: no ``function_id``, a
``traceparent`` that is not a string, an ``action`` type added after this client was written.
Dropping such a frame would leave one of our calls waiting for its timeout, or the engine's
caller waiting for an answer that never comes (the Rust engine sets no timeout on calls routed
to a worker). So the frame is read again as plain JSON: what the client needs (the string
``invocation_id``; the ``result``/``error``, or the ``data``) is kept, a field of the wrong type
reads as absent, and the frame is acted on. The official SDKs read these frames as loosely.
Anything else that fails validation is dropped with a warning (ten per ten seconds at
most, then a summary: an engine may send any number).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from pydantic_core import from_json

from iii_rx.logsafe import RateLimitedLog, printable
from iii_rx.protocol import ErrorBody, FrameError, InvocationResult, InvokeFunction

__all__ = ["salvage"]

log = logging.getLogger("iii_rx.client")
_dropped = RateLimitedLog(log)  # an engine may send any number of them


def salvage(raw: str | bytes, error: FrameError) -> InvocationResult | InvokeFunction | None:
    """The result or invocation in ``raw`` (which failed to decode with ``error``), read
    leniently; ``None`` (logged) when there is nothing to act on."""
    frame = _lenient(raw, error)
    if frame is None:
        _dropped.log(logging.WARNING, "dropped", "dropped a frame from the engine: %s",
                     printable(error, 300))
    else:
        log.debug("read a %s frame leniently: %s", frame.type, error)
    return frame


def _lenient(raw: str | bytes, error: FrameError) -> InvocationResult | InvokeFunction | None:
    try:
        obj = from_json(raw)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("invocation_id"), str):
        return None  # no call to end, nobody waiting for an answer
    kind = obj.get("type")
    function_id = obj.get("function_id")
    fields: dict[str, Any] = {
        "invocation_id": obj["invocation_id"],
        "function_id": function_id if isinstance(function_id, str) else "",
        **{key: obj[key] for key in ("traceparent", "baggage", "namespace")
           if isinstance(obj.get(key), str)},
    }
    if kind == "invocationresult":
        fields.pop("namespace", None)
        fields.update({key: obj[key] for key in ("result", "error") if key in obj})
        try:
            return InvocationResult(**fields)
        except ValidationError:
            return InvocationResult(
                invocation_id=fields["invocation_id"], function_id=fields["function_id"],
                error=ErrorBody(code="invalid_result",
                                message=f"the engine's invocationresult could not be read: "
                                        f"{error}"))
    if kind == "invokefunction":  # an action this client does not know is left out
        try:
            return InvokeFunction(data=obj.get("data"), metadata=obj.get("metadata"), **fields)
        except ValidationError:
            return None
    return None
