"""The live stream of a client's finished spans (``iii.spans``), fed by a span processor.

The OpenTelemetry SDK cannot take a span processor back once added, and a process may open and
close many clients on one provider: so each provider gets one :class:`SpanFeeds` processor,
which hands every finished span to the :class:`SpanFeed` s of the clients open now.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, ClassVar

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from iii_rx.aio import LoopBridge
from iii_rx.streams import HotStream

__all__ = ["SpanFeed", "SpanFeeds"]


class SpanFeed:
    """Hands the finished spans of one client to its ``iii.spans`` stream (on its loop); fed
    by its provider's :class:`SpanFeeds`."""

    def __init__(self, stream: HotStream[ReadableSpan], bridge: LoopBridge) -> None:
        self._stream = stream
        self._bridge = bridge
        self.mine: set[int] = set()
        """Span ids this client started and has not seen end (only while observed)."""
        self.closed = False

    def on_end(self, span: ReadableSpan) -> None:
        if not self.mine or self.closed:
            return
        sc = span.context
        if sc is None:
            return
        try:
            self.mine.remove(sc.span_id)
        except KeyError:
            return
        try:
            self._bridge.run_sync_soon(self._stream.on_next, span)
        except RuntimeError:  # the loop is closed
            self.closed = True


class SpanFeeds(SpanProcessor):
    """The one span processor iii_rx adds to a tracer provider: hands each finished span to
    the feeds of the clients open now. The SDK cannot take a processor back, so a processor
    per client would stay on a process-wide provider after its client closed, with its stream
    and its event loop, and every span would walk all of them."""

    _of: ClassVar[weakref.WeakKeyDictionary[Any, SpanFeeds]] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self.feeds: tuple[SpanFeed, ...] = ()  # replaced whole: read from any thread

    @classmethod
    def join(cls, provider: trace.TracerProvider, feed: SpanFeed) -> SpanFeeds | None:
        """Add ``feed`` to ``provider``'s processor (made and added on first use); ``None``
        for a provider that takes no processors."""
        add = getattr(provider, "add_span_processor", None)
        if add is None:
            return None
        with _FEEDS_LOCK:
            feeds = cls._of.get(provider)
            if feeds is None:
                feeds = cls._of[provider] = cls()
                add(feeds)
            feeds.feeds = (*feeds.feeds, feed)
        return feeds

    def leave(self, feed: SpanFeed) -> None:
        with _FEEDS_LOCK:
            self.feeds = tuple(f for f in self.feeds if f is not feed)

    def on_end(self, span: ReadableSpan) -> None:
        for feed in self.feeds:
            feed.on_end(span)

    def shutdown(self) -> None:
        """The provider shut down: the feeds go quiet."""
        for feed in self.feeds:
            feed.closed = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_FEEDS_LOCK = threading.Lock()
