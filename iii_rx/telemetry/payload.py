"""Payloads recorded on spans: secrets redacted, size capped (``III_TRACE_PAYLOAD_MAX_BYTES``).

The events ``iii.invocation.input`` / ``iii.invocation.output`` carry the payload as JSON in
``iii.payload.json`` (compact), as the official SDKs record them; ``III_DISABLE_TRACE_PAYLOADS=1``
turns them off.
"""

from __future__ import annotations

import json
import os
from typing import Any

from iii_rx.frame_text import dumps

__all__ = ["REDACTED", "payloads_enabled", "payload_max_bytes", "redact", "redacted_json"]

REDACTED = "[REDACTED]"
_SECRET_PARTS = ("api_key", "apikey", "api-key", "password", "secret", "credential",
                 "authorization", "auth_token", "access_token", "refresh_token", "bearer",
                 "private_key", "client_secret")
_CUT = '..."[TRUNCATED]"'


def payloads_enabled() -> bool:
    """Whether spans record payload events (``III_DISABLE_TRACE_PAYLOADS`` is not 1/true)."""
    return os.environ.get("III_DISABLE_TRACE_PAYLOADS", "").strip().lower() not in {"1", "true"}


def payload_max_bytes() -> int | None:
    """``III_TRACE_PAYLOAD_MAX_BYTES`` as a positive int, else ``None`` (no cap)."""
    raw = os.environ.get("III_TRACE_PAYLOAD_MAX_BYTES", "").strip()
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value > 0 else None


def _secret(key: str) -> bool:
    key = key.lower()
    return (any(part in key for part in _SECRET_PARTS) or key == "token"
            or key.endswith(("_token", "-token")))


def redact(value: Any) -> Any:
    """``value`` with the values of secret-looking keys replaced, at any depth."""
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and _secret(k) else redact(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    return value


def _hinted(lowered: str) -> bool:
    """Whether ``lowered`` (a JSON text in lower case) may hold a secret-looking key: every
    one of them holds one of these seven words, so a text holding none has nothing to redact
    (the common case: the payload is encoded once and searched, not walked; seven substring
    searches cost half a regular expression's alternation of the key parts)."""
    return ("key" in lowered or "pass" in lowered or "secret" in lowered
            or "credential" in lowered or "auth" in lowered or "token" in lowered
            or "bearer" in lowered)


_SPACED = json.JSONEncoder(default=str, ensure_ascii=False)
"""``json.dumps``' text (the official Python SDK's), ``str`` for what JSON has no type for."""
_COMPACT = json.JSONEncoder(default=str, ensure_ascii=False, separators=(",", ":"))


def _dumps(value: Any, compact: bool) -> str:
    """JSON of ``value``, non-ASCII as is. Compact goes through the wire's Rust encoder first
    (five times ``json``'s speed on a small payload, and a traced invocation writes two)."""
    if compact:
        try:
            return dumps(value)
        except ValueError:
            pass
    return _json_module_text(value, compact)


def _json_module_text(value: Any, compact: bool) -> str:
    """:func:`_dumps` by the ``json`` module (spaced, or what the wire's encoder refused)."""
    try:
        text = (_COMPACT if compact else _SPACED).encode(value)
    except (TypeError, ValueError):
        return "null"
    # What the wire encoder refused may hold lone surrogates, which no exporter can write.
    return text.encode(errors="replace").decode() if compact else text


def redacted_json(value: Any, max_bytes: int | None, *,
                  compact: bool = True) -> tuple[str, bool]:
    """``(json, truncated)``: ``value`` redacted, as JSON (compact, or spaced as
    ``json.dumps`` writes it), cut to ``max_bytes``."""
    text = _dumps(value, compact)
    if text[:1] in ("{", "[") and _hinted(text.lower()):
        # Redact what was written: models and dataclasses are objects there too.
        text = _dumps(redact(json.loads(text)), compact)
    if max_bytes is None or len(text) * 4 <= max_bytes:
        return text, False
    raw = text.encode(errors="surrogatepass")  # a lone surrogate must not raise here
    if len(raw) <= max_bytes:
        return text, False
    keep = max(0, max_bytes - len(_CUT))
    return raw[:keep].decode(errors="ignore") + _CUT[:max_bytes - keep], True
