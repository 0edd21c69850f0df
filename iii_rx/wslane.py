"""A fast lane for whole data frames beside the ``websockets`` frame machinery.

The library reads every frame through a generator parser, builds a ``Frame``, queues it in an
assembler and hands it over through a future; it writes each one through ``Frame.serialize``
and one transport write per frame. With tens of small frames per read (the engine's and a busy
worker's hot path) that was about a third of their CPU. :class:`HotLane` is the library's
asyncio ``Connection`` with a lane beside it, switched on per connection (:meth:`enable_hot`);
:class:`HotClientConnection` is the client's (the engine's server side is in
``iii_rx.engine.hotsocket``):

* **in**: when the library's parser waits at a frame boundary with nothing buffered, the
  complete, unfragmented text/binary frames at the front of the data (masked toward a server,
  unmasked toward a client) are decoded here and queued for :meth:`next_message`. The first
  frame that is anything else (a control frame, a fragment, a frame over the size limit, bad
  UTF-8, reserved bits, wrong masking, a partial frame) and all that follows go to the library,
  which treats them as it always did (closing with its own codes). The lane pauses reading past
  ``max_queue`` messages, as the library does.
* **out**: :meth:`frame` writes a text frame's bytes (a client masks them with a fresh random
  key, as RFC 6455 requires); :meth:`hot_send` appends one to a buffer flushed in one
  transport write per loop iteration. Whenever the library writes (a pong, a close, a queued
  ``send``), the buffer goes first, so frames keep their order.

:func:`answers_ping` is the keepalive both sides use: a pong stuck behind a large message on
a slow link does not make a live peer look dead (:attr:`HotLane.received` and
:attr:`HotLane.sent` count the bytes each way).

The lane uses the library's sans-I/O internals (``protocol.parser``, ``reader``, ``writes``);
:func:`supported` checks them, and without them :meth:`enable_hot` declines and the connection
is the library's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections import deque
from typing import Any

try:
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ  # a socket's unacknowledged bytes, on Linux
except (ImportError, AttributeError):  # pragma: no cover (not a Unix)
    _OUTQ = None

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.connection import Connection
from websockets.protocol import OPEN, SERVER, Protocol
from websockets.streams import StreamReader

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover (the library's pure-Python build)
    from websockets.utils import apply_mask

__all__ = ["BACKLOG_WAITS", "SLOWEST_LINK", "HotClientConnection", "HotLane", "answers_ping",
           "supported"]

_PARSE = getattr(Protocol.parse, "__code__", None)
_AT_EOF = getattr(StreamReader.at_eof, "__code__", None)
_HEAD_SHORT = [bytes((0x81, n)) for n in range(126)]
_HEAD_SHORT_MASKED = [bytes((0x81, 0x80 | n)) for n in range(126)]
_KEYS = 1024  # masking keys drawn from the OS per refill
_HEAD_MID = struct.Struct("!BBH").pack
_HEAD_LONG = struct.Struct("!BBQ").pack
_LEN16 = struct.Struct("!H").unpack_from
_LEN64 = struct.Struct("!Q").unpack_from


def supported() -> bool:
    """Whether this ``websockets`` has the internals the lane relies on."""
    return (_PARSE is not None and _AT_EOF is not None
            and hasattr(Connection, "send_data") and hasattr(Connection, "recv"))


class HotLane(Connection):
    """An asyncio websocket connection with the fast lane (off until :meth:`enable_hot`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hot_in: deque[str | bytes] | None = None
        self._hot_out: list[bytes] = []
        self._hot_wake: asyncio.Future[None] | None = None
        self.hot_paused = False
        """Reading is paused because :attr:`hot_in` is full (take through
        :meth:`next_message` then, which resumes it)."""
        self._hot_flush_due = False
        self._hot_high = 64
        self._hot_low = 16
        self._hot_server = False
        self._keys = b""
        self._key_at = 0
        self.received = 0
        """Bytes received so far (any frame: the peer is alive while this grows)."""
        self.sent = 0
        """Bytes handed to the transport so far (counted where they are written: the lane,
        the library's path, the client's batched writes)."""
        self.delivered = 0
        """:attr:`sent` when the last answered ping left: what the peer surely has."""

    def enable_hot(self) -> bool:
        """Switch the lane on (call from the handler); ``False`` where unsupported."""
        protocol = self.protocol
        if (not supported() or protocol.extensions or not isinstance(protocol.writes, list)
                or not hasattr(protocol.reader, "buffer")
                or not hasattr(protocol, "current_size")):  # before websockets 15: cur_size
            return False
        high = getattr(self, "max_queue_high", None)
        if isinstance(high, int) and high > 0:
            self._hot_high = high
            low = getattr(self, "max_queue_low", None)
            self._hot_low = low if isinstance(low, int) else high // 4
        self._hot_server = protocol.side is SERVER
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
        self.received += len(data)
        hot = self.hot_in
        if hot is None or not data or not self._at_boundary() or len(self.recv_messages.frames):
            super().data_received(data)
            return
        limit = self.protocol.max_message_size
        masked = 0x80 if self._hot_server else 0
        key = 4 if masked else 0
        size = len(data)
        pos = 0
        before = len(hot)
        while pos + 6 <= size:
            head = data[pos]
            if head != 0x81 and head != 0x82:  # FIN, no reserved bits, text or binary
                break
            length = data[pos + 1]
            if length & 0x80 != masked:  # masked toward a server only: the library refuses it
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
            end = start + key + length
            if end > size or (limit is not None and length > limit):
                break
            payload = (apply_mask(data[start + 4:end], data[start:start + 4]) if key
                       else data[start:end])
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
                self.hot_paused = True
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
                if self.hot_paused and len(hot) <= self._hot_low:
                    self.hot_paused = False
                    if not getattr(self.recv_messages, "paused", False):
                        self.transport.resume_reading()
                return hot.popleft()
            if len(self.recv_messages.frames) or self.protocol.state is not OPEN:
                return await self.recv()
            wake = self._hot_wake = self.loop.create_future()
            await wake

    # ------------------------------------------------------------------ out

    def frame(self, data: bytes) -> bytes:
        """The bytes of one text frame of UTF-8 ``data`` (masked when this is a client)."""
        length = len(data)
        self.sent += length
        if self._hot_server:
            if length < 126:
                return _HEAD_SHORT[length] + data
            if length < 65536:
                return _HEAD_MID(0x81, 126, length) + data
            return _HEAD_LONG(0x81, 127, length) + data
        at = self._key_at
        if at >= len(self._keys):
            self._keys, at = os.urandom(4 * _KEYS), 0
        key = self._keys[at:at + 4]
        self._key_at = at + 4
        if length < 126:
            head = _HEAD_SHORT_MASKED[length]
        elif length < 65536:
            head = _HEAD_MID(0x81, 0xFE, length)
        else:
            head = _HEAD_LONG(0x81, 0xFF, length)
        return head + key + apply_mask(data, key)

    def hot_send(self, text: str) -> bool:
        """Queue one text frame; ``False`` (not sent) unless open and not held back by flow
        control: the caller then takes the library's path."""
        protocol = self.protocol
        if (self.paused or protocol.state is not OPEN or self.hot_in is None
                or protocol.expect_continuation_frame):
            return False
        data = text.encode()
        out = self._hot_out
        if self._hot_server:  # header and payload as two chunks: no copy until the flush
            length = len(data)
            self.sent += length
            out.append(_HEAD_SHORT[length] if length < 126 else
                       _HEAD_MID(0x81, 126, length) if length < 65536 else
                       _HEAD_LONG(0x81, 127, length))
            out.append(data)
        else:
            out.append(self.frame(data))
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
        writes = self.protocol.writes
        if isinstance(writes, list):  # the library's own frames (the lane's were counted)
            self.sent += sum(map(len, writes))
        if out:
            writes.insert(0, b"".join(out))
            out.clear()
        super().send_data()


class HotClientConnection(HotLane, ClientConnection):
    """The client's connection with the fast lane (see :class:`HotLane`)."""


def _unsent(conn: Connection) -> int:
    """Bytes this side wrote that the peer has not taken yet: those in asyncio's write buffer,
    plus, where the OS tells, those in the socket's send queue (sent but not acknowledged)."""
    transport = conn.transport
    waiting = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if _OUTQ is not None and sock is not None:
        with contextlib.suppress(OSError, ValueError):
            waiting += struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0]
    return waiting


SLOWEST_LINK = 128 * 1024
"""Bytes per second the slowest link a peer is expected on carries (about 1 Mbit/s)."""
BACKLOG_WAITS = 3
"""The most a late pong is allowed for what was sent before it, in ``timeout`` s."""


async def answers_ping(conn: Connection, timeout: float) -> bool:
    """Ping ``conn``; whether its pong came in time, as the link's state allows.

    A pong travels behind whatever was sent before it: on a slow link, behind a large message
    for as long as the message takes. So a pong late by ``timeout`` fails the peer only when,
    over the last ``timeout``, nothing arrived from it (:attr:`HotLane.received`), it took
    none of what this side had sent (:func:`_unsent` did not shrink), and what this side sent
    since the last answered ping could have crossed at :data:`SLOWEST_LINK` (a proxy may
    buffer it where neither side sees it move), an allowance of :data:`BACKLOG_WAITS`
    ``timeout`` s at most. A frozen peer or a black hole shows nothing: it fails within
    ``timeout`` when this side sent little, within ``(1 + BACKLOG_WAITS) * timeout`` at most
    when it was busy sending. Raises ``ConnectionClosed`` as ``ping`` does.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = getattr(conn, "sent", 0)
    backlog = max(0, sent - getattr(conn, "delivered", 0))
    patience = timeout + min(backlog / SLOWEST_LINK, BACKLOG_WAITS * timeout)
    received, unsent = getattr(conn, "received", None), _unsent(conn)

    async def ping() -> None:
        pong = await conn.ping()  # waits while the write buffer is full
        await pong

    waiting = asyncio.ensure_future(ping())
    try:
        while True:
            done, _ = await asyncio.wait((waiting,), timeout=timeout)
            if done:
                waiting.result()  # ConnectionClosed, if the connection ended
                if hasattr(conn, "delivered"):
                    conn.delivered = sent
                return True
            now_received, now_unsent = getattr(conn, "received", None), _unsent(conn)
            moved = (received is not None and now_received != received) or now_unsent < unsent
            if not moved and loop.time() - started >= patience:
                return False
            received, unsent = now_received, now_unsent
    finally:
        if not waiting.done():
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await waiting
        elif not waiting.cancelled():
            waiting.exception()  # retrieved: the connection's end is the caller's to see
