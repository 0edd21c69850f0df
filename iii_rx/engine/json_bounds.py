"""JSON the engine reads from HTTP peers, refused when no frame could carry it on.

The engine parses JSON that arrives over HTTP (REST request bodies, answers of HTTP-invoked
functions) and forwards it in websocket frames. Two kinds of valid-looking JSON cannot make
that trip, and used to fail late with a traceback: nesting deeper than the frame decoders
accept (Python's parser itself raises ``RecursionError`` near 1,000 levels, and the SDKs'
decoders refuse frames nested over ~200), and lone UTF-16 surrogate escapes (``"\\ud800"``),
which no UTF-8 text can hold. :func:`loads_bounded` refuses both up front.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "JsonRefused", "loads_bounded"]

MAX_JSON_DEPTH = 128
"""Deepest nesting forwarded: a frame adds a few levels and decoders stop near 200."""

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


class JsonRefused(ValueError):
    """Valid JSON that cannot be forwarded; ``str()`` says why."""


def loads_bounded(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads(raw)``; :class:`JsonRefused` for what no frame could carry, and
    ``ValueError`` for text that is not JSON.

    The bytes are decoded strictly first: ``json.loads`` of bytes decodes with
    ``surrogatepass``, so encoded surrogates (``b"\\xed\\xa0\\x80"``, not UTF-8) became
    lone surrogates no frame can carry; they are bytes that are not text, as ``b"\\xff"``.
    """
    text = raw.decode(json.detect_encoding(raw))  # UnicodeDecodeError is a ValueError
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonRefused(f"JSON nested deeper than {max_depth} levels") from None
    if raw.count(b"[") + raw.count(b"{") > max_depth and _deeper_than(value, max_depth):
        raise JsonRefused(f"JSON nested deeper than {max_depth} levels")
    if _SURROGATE_ESCAPE.search(raw) is not None:
        try:
            json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise JsonRefused("JSON holds a lone surrogate escape (not valid UTF-8 text)"
                              ) from None
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` levels (iteratively: no recursion)."""
    if not isinstance(value, (dict, list)):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False
