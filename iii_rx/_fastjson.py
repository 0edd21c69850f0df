"""Frame text for the hot path, and the refusal of ``NaN``/``Infinity`` (spec 5.4).

``json``'s C encoder writes a plain result or call about twice as fast as building and dumping
an ``InvocationResult``/``InvokeFunction`` model, and gives the same text that
:func:`iii_rx.protocol.encode` gives (compact, non-ASCII as is, fields in the model's order).
Anything it cannot write (models, sets, dates, cycles, non-finite floats) makes
:func:`result_frame`/:func:`call_frame` return ``None`` and the caller takes the model path,
where :func:`find_non_finite` says whether a float would have been sent as ``null``: JSON has no
``NaN``, and the Rust engine drops a frame that carries one.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

__all__ = ["NON_FINITE", "call_frame", "dumps", "find_non_finite", "result_frame"]

dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
"""Compact JSON, non-ASCII as is; raises ``ValueError`` on NaN/Infinity and cycles."""

NON_FINITE = "NaN and Infinity cannot be sent: JSON has no such numbers (spec 5.4)"


def result_frame(invocation_id: str, function_id: str, result: Any,
                 traceparent: str | None = None) -> str | None:
    """The ``invocationresult`` text of a plain JSON ``result``, or ``None`` if it is not."""
    try:
        body = dumps(result)
    except (TypeError, ValueError):
        return None
    head = (f'{{"type":"invocationresult","invocation_id":{dumps(invocation_id)},'
            f'"function_id":{dumps(function_id)},"result":{body}')
    if traceparent is None:
        return head + "}"
    return f'{head},"traceparent":{dumps(traceparent)}}}'


def call_frame(function_id: str, data: Any, invocation_id: str | None, metadata: Any,
               traceparent: str | None, baggage: str | None, namespace: str | None) -> str | None:
    """The ``invokefunction`` text of a call without ``action`` whose ``data`` and
    ``metadata`` are plain JSON (``data`` always written, the rest when not ``None``), or
    ``None``."""
    try:
        parts = ['{"type":"invokefunction","function_id":', dumps(function_id),
                 ',"data":', dumps(data)]
        if invocation_id is not None:
            parts += (',"invocation_id":', dumps(invocation_id))
        if metadata is not None:
            parts += (',"metadata":', dumps(metadata))
    except (TypeError, ValueError):
        return None
    if traceparent is not None:
        parts += (',"traceparent":', dumps(traceparent))
    if baggage is not None:
        parts += (',"baggage":', dumps(baggage))
    if namespace is not None:
        parts += (',"namespace":', dumps(namespace))
    parts.append("}")
    return "".join(parts)


def find_non_finite(value: Any) -> bool:
    """Whether a NaN or infinite float hides in ``value`` (containers, models, dataclasses).

    Meant for values the model path has already encoded (so without cycles).
    """
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (str, int, bytes)) or value is None:
        return False
    if isinstance(value, Mapping):
        return any(find_non_finite(item) for item in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(find_non_finite(item) for item in value)
    if isinstance(value, BaseModel):
        return find_non_finite(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return find_non_finite(dataclasses.asdict(value))
    return False
