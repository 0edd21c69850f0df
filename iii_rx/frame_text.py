"""The one encoder of the two hot-path frames, ``invokefunction`` and ``invocationresult``,
and their model-free reader.

Client and engine build one of these for every call. The frame is a dict written in one
pydantic-core pass: no model is built (what made the model path slow for small payloads), and
the payload goes through the Rust serializer :func:`iii_rx.protocol.encode` uses, two to three
times faster than ``json``'s C encoder once payloads hold floats or a few records. So the text
is the model path's text: fields in the model's order, compact, non-ASCII as is, a ``None``
field left out unless it is ``data`` or a ``null_result``.

Reading: :func:`read_hot` takes the same two frames apart without building a model. It parses
with pydantic-core's JSON parser (the one :func:`iii_rx.protocol.decode` runs, so the same
depth limit, number and ``NaN`` handling) and accepts only frames whose fields have the plain
shapes the model would accept unchanged; anything else (an ``action``, an ``error``, a field of
the wrong type, another frame type) returns ``None`` and goes through the model, so every
refusal keeps its exact error. That skips the per-frame model validation, which cost four times
the parse.

``NaN``/``Infinity`` (docs/protocol.md §5.4): JSON has no such numbers and the Rust engine drops a
frame that carries one. They are written as the bare tokens the official SDK writes, so the engine
relays them unchanged (``allow_nan=True``, the default, as in :func:`json.dumps`); the client passes
``allow_nan=False`` and gets :class:`NonFiniteError` instead. The check reads the text just
written rather than walking the payload, see :func:`_refuse_non_finite` for what it costs.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import re
from collections.abc import Mapping
from enum import Enum
from typing import Any, Final

from pydantic import BaseModel
from pydantic_core import SchemaSerializer, core_schema, from_json

from iii_rx.protocol import EnqueueAction, ErrorBody, VoidAction

__all__ = ["NON_FINITE", "HotInvoke", "HotResult", "NonFiniteError", "dumps", "invoke_text",
           "read_hot", "result_text", "unwritable"]

NON_FINITE = "NaN and Infinity cannot be sent: JSON has no such numbers (docs/protocol.md §5.4)"


class NonFiniteError(ValueError):
    """A payload holds NaN or an infinity and ``allow_nan`` is off; the message is
    :data:`NON_FINITE`. A ``ValueError`` like every other "cannot encode" error, but its own
    class so that a caller can tell a refusal from a value that cannot be written at all."""

    def __init__(self) -> None:
        super().__init__(NON_FINITE)


_UNKNOWN_TYPE = re.compile(r"Unable to serialize unknown type: <class '(?:([^']*)\.)?([^'.]+)'>")
_CHANNEL_ENDS = {"ChannelWriter": "writer_ref", "ChannelReader": "reader_ref"}


def unwritable(error: ValueError, what: str) -> TypeError | ValueError:
    """The error to raise for ``error``, pydantic's for a value it could not write, with
    ``what`` in front (``"the call to 'x' was not sent"``): pydantic's own says neither which
    call nor, at times, which value.

    ``TypeError`` for a value of a type JSON cannot carry, as :func:`json.dumps` (and so the
    official SDK) raises: an unknown type, bytes that are not UTF-8; ``ValueError`` for a
    value it cannot take: a cycle, a string with a lone surrogate. Run on failure only.
    """
    text = str(error)
    found = _UNKNOWN_TYPE.search(text)
    if found is not None:
        module, name = found.groups()
        ref = _CHANNEL_ENDS.get(name) if (module or "").startswith("iii_rx.") else None
        if ref is not None:
            return TypeError(f"{what}: a {name} cannot be sent; pass the channel's {ref}, "
                             f"not the {name}")
        return TypeError(f"{what}: Object of type {name} is not JSON serializable")
    if "invalid utf-8" in text:
        return TypeError(f"{what}: bytes that are not UTF-8 cannot be sent (JSON has no "
                         f"binary: send text such as base64, or the data through a channel)")
    if "surrogates not allowed" in text:
        return ValueError(f"{what}: a string holds a lone surrogate, which UTF-8 cannot encode")
    if "Circular reference" in text:
        return ValueError(f"{what}: Circular reference detected")
    return ValueError(f"{what}: {text}")


# ``any`` infers every value's type in Rust, exactly as the ``Any`` fields of the frame models
# do; ``exclude_unset`` reaches nested models as in ``protocol.encode``. ``constants`` writes
# non-finite floats as the tokens the SDK writes (the model default would write ``null``).
_to_json = SchemaSerializer(
    core_schema.any_schema(), core_schema.CoreConfig(ser_json_inf_nan="constants")
).to_json

_CONTAINERS = frozenset({dict, list, tuple, set, frozenset})
_is_tracked = gc.is_tracked


def dumps(value: Any, *, allow_nan: bool = True) -> str:
    """Compact JSON of any value pydantic can write, non-ASCII as is.

    Raises ``ValueError`` (pydantic's ``PydanticSerializationError``, the model path's error
    and text) for a cycle, a type it cannot write or a lone surrogate, and
    :class:`NonFiniteError` for a NaN or an infinity when ``allow_nan`` is off.
    """
    text: str = _to_json(value, exclude_unset=True).decode()
    if not allow_nan:
        _refuse_non_finite(text, value)
    return text


def invoke_text(
    function_id: str,
    data: Any,
    *,
    invocation_id: str | None = None,
    metadata: Any = None,
    traceparent: str | None = None,
    baggage: str | None = None,
    action: VoidAction | EnqueueAction | None = None,
    namespace: str | None = None,
    allow_nan: bool = True,
) -> str:
    """The text of an ``invokefunction``: ``data`` always (``null`` included), every other
    field when not ``None``. Errors as :func:`dumps`; only ``data`` and ``metadata`` are
    checked for non-finite floats."""
    frame: dict[str, Any] = {"type": "invokefunction", "function_id": function_id, "data": data}
    if invocation_id is not None:
        frame["invocation_id"] = invocation_id
    if metadata is not None:
        frame["metadata"] = metadata
    if traceparent is not None:
        frame["traceparent"] = traceparent
    if baggage is not None:
        frame["baggage"] = baggage
    if action is not None:
        frame["action"] = action
    if namespace is not None:
        frame["namespace"] = namespace
    text: str = _to_json(frame, exclude_unset=True).decode()
    if not allow_nan:
        _refuse_non_finite(text, data, metadata)
    return text


def result_text(
    invocation_id: str,
    function_id: str,
    result: Any = None,
    error: ErrorBody | Mapping[str, Any] | None = None,
    traceparent: str | None = None,
    baggage: str | None = None,
    *,
    null_result: bool = False,
    allow_nan: bool = True,
) -> str:
    """The text of an ``invocationresult``: ``error`` when given, else ``result``.

    A ``None`` result is left out, as the Rust engine does, unless ``null_result`` (the client
    always writes ``"result":null``). ``error`` is an :class:`ErrorBody` (its unset
    ``stacktrace`` left out) or a plain dict. Errors as :func:`dumps`; only ``result`` is
    checked for non-finite floats.
    """
    frame: dict[str, Any] = {
        "type": "invocationresult",
        "invocation_id": invocation_id,
        "function_id": function_id,
    }
    if error is not None:
        frame["error"] = error
    elif result is not None or null_result:
        frame["result"] = result
    if traceparent is not None:
        frame["traceparent"] = traceparent
    if baggage is not None:
        frame["baggage"] = baggage
    text: str = _to_json(frame, exclude_unset=True).decode()
    if not allow_nan and error is None:
        _refuse_non_finite(text, result)
    return text


def _refuse_non_finite(text: str, payload: Any, more: Any = None) -> None:
    """Raise :class:`NonFiniteError` if ``text``, just written from ``payload`` (and ``more``,
    the metadata of a call), carries a non-finite float.

    A float we write shows as a bare ``NaN``/``Infinity``: no ``N`` and no ``I`` in the text
    (a ``memchr`` each) means none; else substring searches and, only if a word is there, a
    strict parse tell a token from text in a string. Pydantic models write their own floats
    (``null`` unless their config says otherwise), so they are looked for only when a payload
    is a container that holds an object (``gc`` never tracks a scalar and untracks dicts and
    tuples of scalars) and the text holds a ``null`` (or those words): a level-by-level scan
    with ``gc``, then the exact walk if a model or a dataclass turns up.
    """
    words = ("N" in text and "NaN" in text) or ("I" in text and "Infinity" in text)
    if words:
        try:
            from_json(text, allow_inf_nan=False)
        except ValueError:
            raise NonFiniteError() from None
    if ((_is_tracked(payload) or _is_tracked(more)) and (words or "null" in text)
            and not _only_containers((payload, more))
            and (_holds_non_finite(payload) or _holds_non_finite(more))):
        raise NonFiniteError()


def _only_containers(payload: tuple[Any, ...]) -> bool:
    """Whether every object inside ``payload`` is a plain container or a scalar.

    Level by level with ``gc``: the referents of a level in one C call, its untracked values
    (scalars, dicts and tuples of scalars) dropped in another.
    """
    level = list(filter(_is_tracked, payload))
    while level:
        if not _CONTAINERS.issuperset(map(type, level)):
            return False
        level = list(filter(_is_tracked, gc.get_referents(*level)))
    return True


def _holds_non_finite(value: Any) -> bool:
    """Whether a NaN or infinite float is in ``value`` as it would be sent: containers,
    pydantic models (their set fields), dataclasses, enum values. The slow exact walk, run
    only when a payload holds such objects; ``value`` was serialized already, so no cycle."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if value is None or isinstance(value, (str, int, bytes)):
        return False
    if isinstance(value, Mapping):
        return any(map(_holds_non_finite, value.values()))
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(map(_holds_non_finite, value))
    if isinstance(value, BaseModel):
        return _holds_non_finite(value.model_dump(exclude_unset=True))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(_holds_non_finite(getattr(value, field.name))
                   for field in dataclasses.fields(value))
    if isinstance(value, Enum):
        return _holds_non_finite(value.value)
    return False


class HotInvoke:
    """An ``invokefunction`` read by :func:`read_hot`: the attributes the router reads of an
    :class:`~iii_rx.protocol.InvokeFunction`, with no ``action`` (those take the model)."""

    __slots__ = ("baggage", "data", "function_id", "invocation_id", "metadata", "namespace",
                 "traceparent")
    type: Final = "invokefunction"
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
    type: Final = "invocationresult"
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
