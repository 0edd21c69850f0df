"""The update operations of ``state::update`` (and of ``stream::update``, which shares them).

The official SDKs send an ordered list of operations, applied one after the other to the value
stored under a key (``{}`` when the key is absent):

=============  ==============================================================================
``set``        ``{"type": "set", "path": "status", "value": ...}``: set a first-level field,
               or the whole value when ``path`` is ``""``
``merge``      ``{"type": "merge", "path": ... , "value": {...}}``: shallow-merge an object at
               the root (``path`` absent, ``""`` or ``[]``), at a first-level key (a string) or
               at a nested location (a list of literal segments); missing or non-object
               intermediates become ``{}``
``increment``  ``{"type": "increment", "path": "count", "by": 1}``: add to a number (a missing
               field or key starts from 0)
``decrement``  ``{"type": "decrement", "path": "count", "by": 1}``: subtract likewise
``append``     ``{"type": "append", "path": ..., "value": ...}``: push onto an array or
               concatenate onto a string (a missing target becomes the string, or a
               one-element array); ``path`` as for ``merge``
``remove``     ``{"type": "remove", "path": "status"}``: drop a first-level field (``""``: the
               value becomes ``null``)
=============  ==============================================================================

A string ``path`` is one literal key: ``"a.b"`` is the key ``a.b``, never ``a`` then ``b``.
An operation that cannot apply (a path over the bounds, a ``__proto__`` / ``constructor`` /
``prototype`` segment, a number expected, an object expected, ...) is skipped and reported in
``errors`` (``{"op_index", "code", "message", "doc_url"}``, codes as the Rust engine's, e.g.
``merge.path.too_deep``, ``increment.not_number``); the others still apply, and the result
is stored even when some failed. A malformed list (an unknown ``type``, a missing ``path``)
fails the whole call before anything applies.

The functions here are pure: :func:`apply_ops` never changes the value it is given.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from iii_rx.engine.workers._common import MISSING, bad_input, json_kind

__all__ = [
    "DOC_URL",
    "MAX_PATH_DEPTH",
    "MAX_SEGMENT_BYTES",
    "MAX_VALUE_DEPTH",
    "MAX_VALUE_KEYS",
    "Op",
    "apply_ops",
    "parse_ops",
]

MAX_PATH_DEPTH = 32
MAX_SEGMENT_BYTES = 256
MAX_VALUE_DEPTH = 16
MAX_VALUE_KEYS = 1024
_FORBIDDEN_KEYS = frozenset({"__proto__", "constructor", "prototype"})
DOC_URL = "https://iii.dev/docs/workers/iii-state#error-codes"
_KINDS = frozenset({"set", "merge", "increment", "decrement", "append", "remove"})


@dataclass(frozen=True, slots=True)
class Op:
    """One checked operation: ``kind``, its path segments, and ``value`` or ``by``."""

    kind: str
    segments: tuple[str, ...]
    value: Any = None
    by: int | float = 0
    nested_path: bool = False
    """Whether the path was given as a list (``merge`` / ``append``)."""


class _Failed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_ops(function_id: str, raw: Any) -> list[Op]:
    """Check the ``ops`` field of an update; raises ``deserialization_error`` when malformed."""
    if not isinstance(raw, list):
        raise bad_input(function_id, f"field `ops` must be an array, got {json_kind(raw)}")
    return [_parse_op(function_id, index, item) for index, item in enumerate(raw)]


def _parse_op(function_id: str, index: int, item: Any) -> Op:
    where = f"ops[{index}]"
    if not isinstance(item, dict):
        raise bad_input(function_id, f"{where} must be an object, got {json_kind(item)}")
    kind = item.get("type")
    if kind not in _KINDS:
        raise bad_input(function_id, f"{where}: unknown operation type {kind!r} (expected one of "
                   "set, merge, increment, decrement, append, remove)")
    if kind in ("merge", "append"):
        path = item.get("path")
        if "value" not in item:
            raise bad_input(function_id, f"{where}: missing field `value`")
        if path is None or isinstance(path, str):
            segments: tuple[str, ...] = (path,) if path else ()
            return Op(kind, segments, item["value"])
        if isinstance(path, list) and all(isinstance(s, str) for s in path):
            return Op(kind, tuple(path), item["value"], nested_path=True)
        raise bad_input(function_id, f"{where}: `path` must be a string or an array of strings")
    path = item.get("path")
    if not isinstance(path, str):
        raise bad_input(function_id, f"{where}: field `path` must be a string, got "
                   f"{json_kind(path) if 'path' in item else 'nothing'}")
    segments = (path,) if path else ()
    if kind in ("increment", "decrement"):
        by = item.get("by")
        if isinstance(by, bool) or not isinstance(by, (int, float)):
            raise bad_input(function_id, f"{where}: field `by` must be a number")
        return Op(kind, segments, by=by)
    return Op(kind, segments, item.get("value"))


def apply_ops(old: Any, ops: list[Op]) -> tuple[Any, list[dict[str, Any]]]:
    """Apply ``ops`` to ``old`` (:data:`MISSING` when the key is absent).

    Returns the new value and the errors of the operations that did not apply.
    """
    fresh = old is MISSING
    current: Any = {} if fresh else copy.deepcopy(old)
    errors: list[dict[str, Any]] = []
    for index, op in enumerate(ops):
        try:
            _check_path(op)
            current = _APPLY[op.kind](current, op, fresh)
        except _Failed as failure:
            errors.append({"op_index": index, "code": failure.code,
                           "message": failure.message, "doc_url": DOC_URL})
            continue
        fresh = False
    return current, errors


def _check_path(op: Op) -> None:
    segments = op.segments
    if len(segments) > MAX_PATH_DEPTH:
        raise _Failed(f"{op.kind}.path.too_deep", f"the path has {len(segments)} segments; "
                      f"at most {MAX_PATH_DEPTH} are allowed")
    for segment in segments:
        if not segment:
            raise _Failed(f"{op.kind}.path.empty_segment", "the path has an empty segment")
        size = len(segment.encode("utf-8", "surrogatepass"))
        if size > MAX_SEGMENT_BYTES:
            raise _Failed(f"{op.kind}.path.segment_too_long", f"a path segment has {size} "
                          f"bytes; at most {MAX_SEGMENT_BYTES} are allowed")
        if segment in _FORBIDDEN_KEYS:
            raise _Failed(f"{op.kind}.path.proto_polluted",
                          f"the path segment {segment!r} is not allowed")


def _label(op: Op) -> str:
    if not op.segments:
        return "the root"
    if op.nested_path:
        return "path [" + ", ".join(op.segments) + "]"
    return f"path {op.segments[0]!r}"


def _not_object(op: Op, target: Any) -> _Failed:
    return _Failed(f"{op.kind}.target_not_object", f"cannot {op.kind} at {_label(op)}: the "
                   f"value is {json_kind(target)}, not an object")


def _set(current: Any, op: Op, fresh: bool) -> Any:
    if not op.segments:
        return op.value
    if not isinstance(current, dict):
        raise _not_object(op, current)
    current[op.segments[0]] = op.value
    return current


def _merge(current: Any, op: Op, fresh: bool) -> Any:
    value = op.value
    if not isinstance(value, dict):
        raise _Failed("merge.value.not_an_object",
                      f"a merge needs an object value, got {json_kind(value)}")
    if len(value) > MAX_VALUE_KEYS:
        raise _Failed("merge.value.too_many_keys", f"the merged object has {len(value)} keys; "
                      f"at most {MAX_VALUE_KEYS} are allowed")
    polluted = next((k for k in value if k in _FORBIDDEN_KEYS), None)
    if polluted is not None:
        raise _Failed("merge.value.proto_polluted",
                      f"the merged object may not have the key {polluted!r}")
    depth = _depth(value)
    if depth > MAX_VALUE_DEPTH:
        raise _Failed("merge.value.too_deep", f"the merged object nests {depth} levels; at "
                      f"most {MAX_VALUE_DEPTH} are allowed")
    if not op.segments:
        if not isinstance(current, dict):
            raise _not_object(op, current)
        current.update(copy.deepcopy(value))
        return current
    if not isinstance(current, dict):
        current = {}
    _walk(current, op.segments).update(copy.deepcopy(value))
    return current


def _walk(node: dict[str, Any], segments: tuple[str, ...]) -> dict[str, Any]:
    """The object at ``segments`` under ``node``, creating (or replacing by) ``{}`` on the way."""
    for segment in segments:
        child = node.get(segment)
        if not isinstance(child, dict):
            child = node[segment] = {}
        node = child
    return node


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _add(current: Any, op: Op, fresh: bool) -> Any:
    delta = op.by if op.kind == "increment" else -op.by
    if not op.segments:
        if fresh:
            return delta
        if not _is_number(current):
            raise _Failed(f"{op.kind}.not_number",
                          f"expected a number at the root, got {json_kind(current)}")
        return current + delta
    if not isinstance(current, dict):
        raise _not_object(op, current)
    key = op.segments[0]
    if key not in current:
        current[key] = delta
    elif _is_number(current[key]):
        current[key] = current[key] + delta
    else:
        raise _Failed(f"{op.kind}.not_number",
                      f"expected a number at {_label(op)}, got {json_kind(current[key])}")
    return current


def _append(current: Any, op: Op, fresh: bool) -> Any:
    if not op.segments:
        return _append_to(None if fresh else current, op)
    if not isinstance(current, dict):
        raise _not_object(op, current)
    *parents, leaf = op.segments
    parent = _walk(current, tuple(parents)) if parents else current
    if leaf in parent:
        parent[leaf] = _append_to(parent[leaf], op)
    elif parents:
        parent[leaf] = [copy.deepcopy(op.value)]
    else:
        parent[leaf] = _first_append(op.value)
    return current


def _append_to(target: Any, op: Op) -> Any:
    value = op.value
    if target is None:
        return _first_append(value)
    if isinstance(target, list):
        target.append(copy.deepcopy(value))
        return target
    if isinstance(target, str):
        if not isinstance(value, str):
            raise _Failed("append.type_mismatch", f"cannot append {json_kind(value)} to the "
                          f"string at {_label(op)}: only strings concatenate")
        return target + value
    raise _Failed("append.type_mismatch", f"cannot append at {_label(op)}: the target is "
                  f"{json_kind(target)}, not an array, a string or null")


def _first_append(value: Any) -> Any:
    return value if isinstance(value, str) else [copy.deepcopy(value)]


def _remove(current: Any, op: Op, fresh: bool) -> Any:
    if not op.segments:
        return None
    if not isinstance(current, dict):
        raise _not_object(op, current)
    current.pop(op.segments[0], None)
    return current


_APPLY = {"set": _set, "merge": _merge, "increment": _add, "decrement": _add,
          "append": _append, "remove": _remove}
