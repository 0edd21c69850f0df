"""The engine's ring of the last spans workers exported, decoded when someone reads it.

A busy worker exports a frame of a few hundred spans every 100 ms. Decoding a span (the JSON
parse, then the record the Rust engine's answers are shaped like) costs the engine about as
much CPU as routing the call the span describes, and all but the last ``max_spans`` are thrown
away unread. So a frame of spans is kept as it came and decoded only when the spans are read
(``engine::traces::*``, a test, a tool); a frame that later frames have pushed out of the ring
is dropped without ever being decoded.

How many spans a frame holds is counted without parsing it: every OTLP span, and nothing
else in an export request, has a ``"startTimeUnixNano"`` key (an event's is
``timeUnixNano``; inside a JSON string the quotes would be escaped). A frame with no such key
(empty, malformed, or spelled otherwise) is decoded at once. So is the oldest waiting frame
whenever the waiting ones hold more than ``max_pending_bytes`` (a frame may be up to the
engine's message limit, 64 MiB, with one span in it): what waits stays bounded in count and
in bytes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from iii_rx.engine.workers.otel_decode import decode_frame

__all__ = ["SpanStore"]

_SPAN_KEY = b'"startTimeUnixNano"'


class SpanStore:
    """The last ``max_spans`` spans of the ``OTLP`` frames added (see the module docstring);
    ``rejected(error)`` is called for a frame found not to decode."""

    def __init__(self, max_spans: int, rejected: Callable[[ValueError], None], *,
                 max_pending_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_spans = max_spans
        self.max_pending_bytes = max_pending_bytes
        self._rejected = rejected
        self._decoded: deque[dict[str, Any]] = deque(maxlen=max_spans)
        self._pending: deque[tuple[bytes, int]] = deque()
        """Frames not decoded yet, oldest first, with the spans each holds."""
        self._pending_spans = 0
        self._pending_bytes = 0

    def add(self, frame: bytes) -> None:
        """Keep one ``OTLP`` frame (its tag included)."""
        count = frame.count(_SPAN_KEY)
        if count == 0:
            self._decode(frame)
            return
        pending = self._pending
        pending.append((frame, count))
        self._pending_spans += count
        self._pending_bytes += len(frame)
        # Drop the oldest frames the newer ones replace in the ring.
        while self._pending_spans - pending[0][1] >= self.max_spans:
            self._take()
        if self._pending_spans >= self.max_spans:
            self._decoded.clear()  # every decoded span would be pushed out
        while self._pending_bytes > self.max_pending_bytes:
            self._decode(self._take()[0])

    def records(self) -> deque[dict[str, Any]]:
        """The stored spans, oldest first (decoding what is pending)."""
        while self._pending:
            self._decode(self._take()[0])
        return self._decoded

    def clear(self) -> None:
        self._pending.clear()
        self._pending_spans = self._pending_bytes = 0
        self._decoded.clear()

    def _take(self) -> tuple[bytes, int]:
        """The oldest waiting frame, out of the counts."""
        frame, count = self._pending.popleft()
        self._pending_spans -= count
        self._pending_bytes -= len(frame)
        return frame, count

    def _decode(self, frame: bytes) -> None:
        try:
            _, records = decode_frame(frame)
        except ValueError as exc:
            self._rejected(exc)
            return
        self._decoded.extend(records)
