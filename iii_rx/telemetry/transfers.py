"""A span per channel transfer, and the channel byte counters.

Once a client enables OpenTelemetry (:func:`~iii_rx.telemetry.tracing.attach`), every channel
end this process opens gets a :class:`Transfer`: a span ``channel read`` / ``channel write``
(kind INTERNAL, a child of the span current where the end first opened its socket, e.g. the
handler's) that counts the frames and bytes moved and ends when the end closes or fails (status
``ERROR`` then). Its attributes: ``iii.channel.id``, ``iii.channel.direction``,
``iii.channel.bytes``, ``iii.channel.frames``. The bytes also go to the counters
``iii.channel.bytes_read`` / ``iii.channel.bytes_written`` when metrics are on.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from iii_rx.telemetry.metrics import Metrics

__all__ = ["ChannelTelemetry", "Transfer"]


class ChannelTelemetry:
    """Makes the :class:`Transfer` of each channel end (see the module docstring)."""

    def __init__(self, tracer: trace.Tracer, metrics: Metrics | None) -> None:
        self.tracer = tracer
        self.metrics = metrics

    def start(self, channel_id: str, direction: str) -> Transfer:
        """A transfer begins: ``direction`` is ``"read"`` or ``"write"``."""
        span = self.tracer.start_span(f"channel {direction}", kind=SpanKind.INTERNAL,
                                      attributes={"iii.channel.id": channel_id,
                                                  "iii.channel.direction": direction})
        counter = None
        if self.metrics is not None:
            counter = (self.metrics.bytes_read if direction == "read"
                       else self.metrics.bytes_written)
        return Transfer(span, counter)


class Transfer:
    """One channel end's transfer: frames and bytes so far, ended once."""

    __slots__ = ("bytes", "counter", "frames", "span")

    def __init__(self, span: trace.Span, counter: Any) -> None:
        self.span: trace.Span | None = span
        self.counter = counter
        self.bytes = 0
        self.frames = 0

    def moved(self, frame: bytes | bytearray | memoryview | str, frames: int = 1) -> None:
        """``frames`` frames holding ``frame`` went through (text counts its UTF-8 bytes)."""
        size = len(frame.encode()) if isinstance(frame, str) else memoryview(frame).nbytes
        self.bytes += size
        self.frames += frames
        if self.counter is not None:
            self.counter.add(size)

    def end(self, error: BaseException | str | None = None) -> None:
        """The end closed (``error`` ``None``) or failed; later calls do nothing."""
        span = self.span
        if span is None:
            return
        self.span = None
        span.set_attribute("iii.channel.bytes", self.bytes)
        span.set_attribute("iii.channel.frames", self.frames)
        if error is not None:
            if isinstance(error, BaseException):
                span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, str(error)))
        span.end()
