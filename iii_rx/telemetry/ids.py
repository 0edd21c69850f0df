"""W3C trace context on the wire (docs/protocol.md §5.5, §10.4), cheap when OpenTelemetry is off.

A handler acts as the ``execute`` span of its invocation: it keeps the caller's trace id (or
starts a trace when the frame had none), gets a span id of its own, and forwards
``traceparent`` = ``00-{trace_id}-{span_id}-{flags}`` plus the caller's ``baggage`` on nested
calls and on its result. Outside handlers, an active OpenTelemetry span (when OTel is enabled and
installed) is injected through the OTel propagator instead. When a client traces
(``connect(otel=...)``, :mod:`iii_rx.telemetry.tracing`), real spans replace the ids made here.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any

__all__ = [
    "CANONICAL_TRACEPARENT",
    "format_traceparent",
    "hex_id",
    "made_here",
    "new_span_id",
    "new_trace_id",
    "otel_enabled",
    "otel_trace_headers",
    "parse_traceparent",
    "propagate_otel",
    "wire_traceparent",
]

OTEL_LOGS = [False]
"""Whether ``Logger`` records also go to OpenTelemetry logs (a client enabled them)."""

_FORCED = [False]
"""Set once a client traces: the active OpenTelemetry span is then propagated whatever
``OTEL_ENABLED`` says."""


def propagate_otel() -> None:
    """Propagate the active OpenTelemetry span from now on (a client enabled tracing)."""
    _FORCED[0] = True

LOCAL_TRACEPARENTS: dict[str, None] = {}
"""``traceparent`` texts made here for calls from a span current in this process (a handler's,
or one of the user's): those calls' CLIENT spans have a local parent, not a remote one."""
_LOCAL_MAX = 1024


def made_here(traceparent: str) -> str:
    """Remember that ``traceparent`` names a span of this process (see
    :data:`LOCAL_TRACEPARENTS`); returns it."""
    if len(LOCAL_TRACEPARENTS) >= _LOCAL_MAX:
        LOCAL_TRACEPARENTS.clear()
    LOCAL_TRACEPARENTS[traceparent] = None
    return traceparent


def hex_id(number: int, digits: int) -> str:
    """``number`` as ``digits`` lower-case hex digits, the W3C text of an id (more digits if it
    does not fit, as a format spec writes it)."""
    try:
        return number.to_bytes(digits // 2, "big").hex()  # a third of a format spec's cost
    except OverflowError:  # not a valid id: written as it is
        return f"{number:0{digits}x}"


def new_trace_id() -> str:
    """32 lower-case hex digits, never all zero."""
    return os.urandom(16).hex()


def new_span_id() -> str:
    """16 lower-case hex digits."""
    return os.urandom(8).hex()


_LOWER_HEX = frozenset("0123456789abcdef")


def parse_traceparent(value: str | None) -> tuple[str, str, str] | None:
    """``(trace_id, parent_span_id, flags)`` of a valid ``traceparent``, else None.

    Read as OpenTelemetry's W3C propagator reads it (which is what an official SDK worker
    does with the same header), so a trace an official worker would break is broken here
    too: ``version-trace_id-span_id-flags`` in lowercase hex (2, 32, 16, 2 digits) after
    optional blanks; version ``ff`` and all-zero ids are invalid; a version-00 value ends
    there (blanks, or a newline, may follow), a later version may go on after a ``-``; at
    most 512 characters.
    """
    if not value or len(value) > 512:
        return None
    text = value.lstrip(" \t")
    head, tail = text[:55], text[55:]
    if (len(head) != 55 or head[2] != "-" or head[35] != "-" or head[52] != "-"
            or not _LOWER_HEX.issuperset(head[:2] + head[3:35] + head[36:52] + head[53:])):
        return None
    version, trace_id, span_id, flags = head[:2], head[3:35], head[36:52], head[53:]
    if tail.endswith("\n"):  # a final newline is tolerated, as by the propagator's pattern
        tail = tail[:-1]
    extended = tail.startswith("-") and "\n" not in tail
    if not (extended or tail.strip(" \t") == ""):
        return None
    if (version == "ff" or (version == "00" and extended)
            or trace_id == "0" * 32 or span_id == "0" * 16):
        return None
    return trace_id, span_id, flags


def format_traceparent(trace_id: str, span_id: str, flags: str = "01") -> str:
    return f"00-{trace_id}-{span_id}-{flags}"


_LEVEL_1_FLAGS = frozenset(("00", "01"))
CANONICAL_TRACEPARENT = re.compile("00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
"""A ``traceparent`` as every SDK writes it (anything else goes through the full parser)."""


def wire_traceparent(value: str | None) -> str | None:
    """``value`` as a frame carries it: a version-00 ``traceparent`` keeps only the sampled
    bit of its flags (W3C Trace Context level 1; docs/protocol.md §10.4).

    The Rust engine (0.23, on opentelemetry-rust 0.31) drops a ``traceparent`` with any other
    flag bit set, and the trace breaks in two there. The OpenTelemetry Python SDK sets level
    2's random-trace-id bit (``03``) from 1.42 on, so does an official SDK caller. Anything
    but a canonical version-00 value goes as it is (the engine reads or drops it).
    """
    if value is None or (value[53:] in _LEVEL_1_FLAGS and len(value) == 55):
        return value
    if CANONICAL_TRACEPARENT.fullmatch(value) is not None:
        return value[:53] + ("01" if int(value[53:], 16) & 1 else "00")
    parsed = parse_traceparent(value)
    if parsed is None or len(value) != 55 or not value.startswith("00-"):
        return value
    trace_id, span_id, flags = parsed
    return f"00-{trace_id}-{span_id}-{'01' if int(flags, 16) & 1 else '00'}"


@lru_cache(maxsize=1)
def otel_enabled() -> bool:
    """``OTEL_ENABLED`` is not false/0/no/off and the OpenTelemetry API is importable."""
    if os.environ.get("OTEL_ENABLED", "").strip().lower() in {"false", "0", "no", "off"}:
        return False
    try:
        import opentelemetry.propagate
        import opentelemetry.trace  # noqa: F401
    except ImportError:  # pragma: no cover - opentelemetry is a dependency
        return False
    return True


def otel_trace_headers() -> tuple[str | None, str | None]:
    """``(traceparent, baggage)`` of the active OpenTelemetry context, if any."""
    if not _FORCED[0] and not otel_enabled():
        return None, None
    from opentelemetry import propagate, trace

    current = trace.get_current_span().get_span_context()
    if not current.is_valid:
        return None, None
    carrier: dict[str, Any] = {}
    propagate.inject(carrier)
    traceparent = carrier.get("traceparent")
    if traceparent is not None and not current.is_remote:
        made_here(traceparent)
    return traceparent, carrier.get("baggage")
