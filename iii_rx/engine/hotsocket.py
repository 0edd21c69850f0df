"""The worker socket's fast lane: whole data frames in and out without the frame machinery.

The ``websockets`` library reads every frame through a generator parser, builds a ``Frame``,
queues it in an assembler and hands it over through a future; it writes each one through
``Frame.serialize`` and one transport write per frame. On the engine's hot path (tens of small
frames per read) that was about a third of its CPU. :class:`HotConnection` is the library's
``ServerConnection`` with a lane beside it, switched on per connection (:meth:`enable_hot`):

* **in**: when the library's parser waits at a frame boundary with nothing buffered, the
  complete, unfragmented, masked text/binary frames at the front of the data are unmasked and
  decoded here and queued for :meth:`next_message`. The first frame that is anything else (a
  control frame, a fragment, a frame over the size limit, bad UTF-8, reserved bits, a partial
  frame) and all that follows go to the library, which treats them as it always did (closing
  with its own codes). The lane pauses reading past ``max_queue`` messages, as the library does.
* **out**: :meth:`hot_write` appends the frame (header written here; a server does not mask)
  to a buffer flushed in one transport write per loop iteration. Whenever the library writes
  (a pong, a close, a queued ``send``), the buffer goes first, so frames keep their order.

The lane uses the library's sans-I/O internals (``protocol.parser``, ``reader``, ``writes``);
:func:`supported` checks them once, and without them :meth:`enable_hot` declines and the
connection is a plain ``ServerConnection``.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.protocol import OPEN, Protocol
from websockets.streams import StreamReader

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover (the library's pure-Python build)
    from websockets.utils import apply_mask

__all__ = ["HotConnection", "supported"]

_PARSE = getattr(Protocol.parse, "__code__", None)
_AT_EOF = getattr(StreamReader.at_eof, "__code__", None)
_HEAD_SHORT = [bytes((0x81, n)) for n in range(126)]
_HEAD_MID = struct.Struct("!BBH").pack
_HEAD_LONG = struct.Struct("!BBQ").pack
_LEN16 = struct.Struct("!H").unpack_from
_LEN64 = struct.Struct("!Q").unpack_from


def supported() -> bool:
    """Whether this ``websockets`` has the internals the lane relies on."""
    return (_PARSE is not None and _AT_EOF is not None
            and hasattr(ServerConnection, "send_data") and hasattr(ServerConnection, "recv"))


class HotConnection(ServerConnection):
    """A ``ServerConnection`` with the fast lane (off until :meth:`enable_hot`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hot_in: deque[str | bytes] | None = None
        self._hot_out: list[bytes] = []
        self._hot_wake: asyncio.Future[None] | None = None
        self._hot_paused = False
        self._hot_flush_due = False
        self._hot_high = 64
        self._hot_low = 16

    def enable_hot(self) -> bool:
        """Switch the lane on (call from the handler); ``False`` where unsupported."""
        protocol = self.protocol
        if (not supported() or protocol.extensions or not isinstance(protocol.writes, list)
                or not hasattr(protocol.reader, "buffer")):
            return False
        high = getattr(self, "max_queue_high", None)
        if isinstance(high, int) and high > 0:
            self._hot_high = high
            low = getattr(self, "max_queue_low", None)
            self._hot_low = low if isinstance(low, int) else high // 4
        self.hot_in = deque()
        return True

    # ------------------------------------------------------------------ in

    def _at_boundary(self) -> bool:
        """Whether the library's parser waits for the first byte of a frame."""
        protocol = self.protocol
        if (protocol.state is not OPEN or protocol.reader.buffer
                or protocol.current_size is not None or protocol.parser_exc is not None):
            return False
        parent, gen = None, protocol.parser
        while (inner := getattr(gen, "gi_yieldfrom", None)) is not None:
            parent, gen = gen, inner
        return (getattr(gen, "gi_code", None) is _AT_EOF
                and getattr(parent, "gi_code", None) is _PARSE)

    def data_received(self, data: bytes) -> None:
        hot = self.hot_in
        if hot is None or not data or not self._at_boundary() or len(self.recv_messages.frames):
            super().data_received(data)
            return
        limit = self.protocol.max_message_size
        size = len(data)
        pos = 0
        before = len(hot)
        while pos + 6 <= size:
            head = data[pos]
            if head != 0x81 and head != 0x82:  # FIN, no reserved bits, text or binary
                break
            length = data[pos + 1]
            if not length & 0x80:  # a client's frame must be masked: the library refuses it
                break
            length &= 0x7F
            start = pos + 2
            if length == 126:
                length = _LEN16(data, start)[0]
                start += 2
            elif length == 127:
                if start + 8 > size:
                    break
                length = _LEN64(data, start)[0]
                start += 8
            end = start + 4 + length
            if end > size or (limit is not None and length > limit):
                break
            payload = apply_mask(data[start + 4:end], data[start:start + 4])
            if head == 0x81:
                try:
                    hot.append(payload.decode())
                except UnicodeDecodeError:
                    break
            else:
                hot.append(payload)
            pos = end
        if len(hot) != before:
            if len(hot) > self._hot_high:
                self._hot_paused = True
                self.transport.pause_reading()
            self._wake_reader()
        if pos < size:
            super().data_received(data[pos:] if pos else data)

    def process_event(self, event: Any) -> None:
        super().process_event(event)
        self._wake_reader()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._wake_reader()

    def _wake_reader(self) -> None:
        wake = self._hot_wake
        if wake is not None:
            self._hot_wake = None
            if not wake.done():
                wake.set_result(None)

    async def next_message(self) -> str | bytes:
        """The next message in arrival order, through the lane or the library.

        Raises ``ConnectionClosed`` once the connection ended and every message was read.
        """
        hot = self.hot_in
        if hot is None:
            return await self.recv()
        while True:
            if hot:
                if self._hot_paused and len(hot) <= self._hot_low:
                    self._hot_paused = False
                    if not getattr(self.recv_messages, "paused", False):
                        self.transport.resume_reading()
                return hot.popleft()
            if len(self.recv_messages.frames) or self.protocol.state is not OPEN:
                return await self.recv()
            wake = self._hot_wake = self.loop.create_future()
            await wake

    # ------------------------------------------------------------------ out

    def hot_write(self, data: bytes) -> bool:
        """Queue one text frame of UTF-8 ``data``; ``False`` (not sent) unless open and not
        held back by flow control: the caller then takes the library's path."""
        if self.paused or self.protocol.state is not OPEN or self.hot_in is None:
            return False
        if self.protocol.expect_continuation_frame:
            return False
        length = len(data)
        out = self._hot_out
        if length < 126:
            out.append(_HEAD_SHORT[length])
        elif length < 65536:
            out.append(_HEAD_MID(0x81, 126, length))
        else:
            out.append(_HEAD_LONG(0x81, 127, length))
        out.append(data)
        if not self._hot_flush_due:
            self._hot_flush_due = True
            self.loop.call_soon(self._hot_flush)
        return True

    def _hot_flush(self) -> None:
        self._hot_flush_due = False
        out = self._hot_out
        if not out:
            return
        if self.protocol.state is not OPEN:
            self.send_data()  # closing: the library writes it ahead of what it has
            return
        if self.transport.is_closing():  # aborted before this flush
            out.clear()
            return
        data = b"".join(out)
        out.clear()
        self.transport.write(data)

    def send_data(self) -> None:
        out = self._hot_out
        if out:
            self.protocol.writes.insert(0, b"".join(out))
            out.clear()
        super().send_data()
