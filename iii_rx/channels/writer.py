"""The writing end of a channel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from iii_rx.channels._end import ChannelEnd, EndsWithBlock, abort_reason
from iii_rx.channels._socket import CLEAN_CLOSE_CODES, FRAME_SIZE, closed_error
from iii_rx.channels.buffered import BufferedChannelWriter
from iii_rx.channels.cborseq import encode_item
from iii_rx.channels.errors import ChannelClosedError, ChannelCloseUnconfirmedError
from iii_rx.protocol import StreamChannelRef

__all__ = ["ChannelWriter"]

_NOT_REFUSALS = CLEAN_CLOSE_CODES | {1001, 1011}
"""Close codes the engine ends a writer with that do not refuse what it sent: the end, the
engine going away, the reader (or the channel) gone."""

T = TypeVar("T")

YIELD_BUDGET = 1024 * 1024
"""Bytes a writer sends between two turns it gives the event loop. websockets' ``send`` only
suspends when its buffer passes the high-water mark, so while the socket accepts data (a fast
reader) a tight write loop would never let heartbeats, handlers or a reader in the same process
run. Each frame counts :data:`FRAME_COST` besides its bytes: at most ~16 frames of 64 KiB or 256
small frames (a few ms of work) run between turns, and one ``sleep(0)`` per MiB costs nothing
measurable. The turn is taken before a write sends anything, or between the frames of a large
one: a cancel landing there cuts nothing, or cuts the write as any cancel within it does."""

FRAME_COST = 4096
"""What one frame counts toward :data:`YIELD_BUDGET` besides its bytes (its fixed cost)."""


class ChannelWriter(ChannelEnd, EndsWithBlock):
    """Writes binary data, text messages and CBOR items into a channel.

    The websocket opens on first use. Every method waits for flow control: when the reader
    (or the engine's buffer in front of it) is full, ``write`` does not return until there is
    room, so memory stays bounded on both sides. Methods raise :class:`ChannelClosedError` once
    the reader has gone away or the engine dropped the channel, or after a write was cancelled
    part-way, which fails the channel (:meth:`write`).

    ``close()`` ends the stream; leaving ``async with writer:`` through an exception ends it
    with :meth:`abort` instead, which an iii_rx reader on the embedded engine reports as an
    error (a reader on the Rust engine cannot tell, docs/protocol.md §7.4). Sync twins
    (``write_sync``, ...) block the calling thread; don't call them on the channel's own event loop.
    """

    def __init__(
        self,
        engine_url: str,
        ref: StreamChannelRef | Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
        *,
        open_timeout: float = 10.0,
    ) -> None:
        # The engine's pipe bounds what waits for the reader; no queue of our own is needed.
        super().__init__(engine_url, ref, headers, "write", open_timeout=open_timeout,
                         max_queue=None)
        self._closed = False
        self._lock: asyncio.Lock | None = None  # keeps a multi-frame write's frames together
        self._unyielded = 0  # bytes (and frame costs) sent since the loop last got a turn
        self._broken: str | None = None
        """Why the channel failed under a cancelled write (see :meth:`_cut`)."""
        self._failing: asyncio.Task[None] | None = None
        """The background close (1011) of a channel failed by a cancelled write."""

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._ws else "not connected"
        return f"<ChannelWriter {self.ref.channel_id} {state}>"

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` or :meth:`abort` was called (or the channel failed)."""
        return self._closed

    # ------------------------------------------------------------------ async API

    async def write(self, data: bytes | bytearray | memoryview, *,
                    frame_size: int = FRAME_SIZE) -> None:
        """Send ``data`` as binary frames of at most ``frame_size`` bytes (1..64 KiB), waiting
        for flow control.

        A write cancelled (a timeout) or interrupted (Ctrl-C in ``write_sync``) after any of its
        frames went out fails the channel: the reader would otherwise get a stream with a
        hole (see :meth:`_cut`). One cancelled before (waiting for another write's frames, or
        for the socket to open) sent nothing and leaves the writer usable. ``frame_size`` is for
        fronts that want smaller frames (``buffered(size)``).
        """
        if self._unyielded >= YIELD_BUDGET and self._affinity.here():
            await self._yield()  # before this write sends anything: a cancel here cuts nothing
        ws = self._ws
        lock = self._lock
        if (ws is not None and type(data) is bytes and 0 < len(data) <= frame_size <= FRAME_SIZE
                and not self._closed and (lock is None or not lock.locked())
                and asyncio.get_running_loop() is self._affinity.loop):
            try:  # the common case, kept short: one frame on an open socket, on its loop
                await ws.send(data)  # hands the frame over at once, then waits for room
            except ConnectionClosed as exc:
                raise self._failed(exc) from None
            except BaseException:
                self._cut(ws, len(data), len(data))
                raise
            if self.transfer is not None:
                self.transfer.moved(data)
            self._unyielded += len(data) + FRAME_COST
            return
        if not 1 <= frame_size <= FRAME_SIZE:
            raise ValueError(f"frame_size must be within 1..{FRAME_SIZE}, got {frame_size}")
        if not self._affinity.here():
            return await self._affinity.hop(self.write(data, frame_size=frame_size))
        view = memoryview(data).cast("B")
        size = view.nbytes
        if size == 0:
            return
        ws = self._ws if self._ws is not None and not self._closed else await self._socket()
        lock = self._lock
        sent = 0  # bytes handed to the socket: ws.send writes its frame before it first waits
        try:
            if size <= frame_size and (lock is None or not lock.locked()):
                sent = size
                await ws.send(data if isinstance(data, bytes) else bytes(view))
                self._unyielded += size + FRAME_COST
            else:
                # Frames of one write stay together even if other writes run concurrently.
                async with lock or self._new_lock():
                    if self._broken is not None:  # cut while this write waited for the lock
                        raise self._broken_error()
                    for start in range(0, size, frame_size):
                        frame = view[start : start + frame_size]
                        sent = start + frame.nbytes
                        await ws.send(frame)
                        self._unyielded += frame.nbytes + FRAME_COST
                        if self._unyielded >= YIELD_BUDGET and sent < size:  # within a
                            await self._yield()  # large write; after it, the next one yields
        except ConnectionClosed as exc:
            raise self._failed(exc) from None
        except BaseException:
            if sent:
                self._cut(ws, sent, size)
            raise
        if self.transfer is not None:
            self.transfer.moved(view, -(-size // frame_size))

    async def send_message(self, text: str) -> None:
        """Send one text frame (an application message, typically JSON).

        Only a ``str``: bytes would go out as a binary frame, into the reader's data rather than
        to its ``on_message`` (send those with :meth:`write`; a dict, ``json.dumps`` it first).
        """
        if not isinstance(text, str):
            raise TypeError(f"send_message(text): text must be a str (one text frame), got "
                            f"{type(text).__name__}; send bytes with write(), "
                            f"a dict as json.dumps(...)")
        if not self._affinity.here():
            return await self._affinity.hop(self.send_message(text))
        if self._unyielded >= YIELD_BUDGET:
            await self._yield()  # before the message goes: a cancel here sends nothing
        ws = await self._socket()
        sent = False  # as a write's: once the frame went out, a cancel fails the channel
        try:
            if self._lock is not None and self._lock.locked():
                async with self._lock:
                    if self._broken is not None:  # cut while this message waited for the lock
                        raise self._broken_error()
                    sent = True
                    await ws.send(text)
            else:
                sent = True
                await ws.send(text)
        except ConnectionClosed as exc:
            raise self._failed(exc) from None
        except BaseException:
            if sent:  # its caller is told it did not finish: a retry would send it twice
                self._cut(ws, len(text), len(text))
            raise
        if self.transfer is not None:
            self.transfer.moved(text)
        self._unyielded += len(text) + FRAME_COST

    async def write_obj(self, obj: Any) -> None:
        """Send ``obj`` as one CBOR item of the channel's CBOR sequence (see docs/channels.md).

        A reader decodes the sequence with ``reader.objects()`` (or ``decode_cbor``); item
        boundaries do not depend on frames, so large items are split like any data.
        """
        await self.write(encode_item(obj))

    def buffered(self, size: int = FRAME_SIZE) -> BufferedChannelWriter:
        """A buffering front that gathers small writes into frames of up to ``size`` bytes.

        Much faster for many small writes; the reader's chunks then no longer match the writes.
        Call ``flush()``/``close()`` on it (or use it as ``async with``).
        """
        return BufferedChannelWriter(self, size)

    async def close(self) -> None:
        """End the stream cleanly: the reader gets everything written, then the end.

        A writer that never wrote connects just to close, so that the reader sees an empty
        stream instead of waiting for the engine's sweep. Idempotent. Raises
        :class:`ChannelClosedError` when the engine had refused what was sent (a frame over
        its limit: 1009) or the socket failed, and :class:`ChannelCloseUnconfirmedError` when
        the engine did not confirm the end within the closing handshake's 10 s: it had not
        read everything yet (a reader that does not read, a stalled link), so the data may
        still arrive. A reader that left first is reported by the writes after it, not here
        (it may have read all it wanted).
        """
        await self._end(1000, "")

    async def abort(self, reason: str = "writer failed") -> None:
        """End the stream as failed (close code 1011): on the embedded engine an iii_rx reader
        raises :class:`ChannelClosedError` after the data already sent."""
        await self._end(1011, reason)

    async def give_up(self, reason: str) -> None:
        """:meth:`abort` on behalf of a holder that failed or was cut short (an end that never
        connected connects to say it: its reader would otherwise see a clean, empty end)."""
        await self.abort(reason)

    async def _end(self, code: int, reason: str) -> None:
        if not self._affinity.here():
            return await self._affinity.hop(self._end(code, reason))
        if self._closed:
            # A channel failed by a cancelled write is being closed in the background (not
            # awaited here: an abort() on the way out of a cancelled task must not wait).
            if self._broken is not None and code == 1000:
                raise self._broken_error()
            return
        self._closed = True
        try:
            ws = self._ws or await self._open()
        except ChannelClosedError:
            return
        error: BaseException | str | None = None if code == 1000 else reason
        try:
            try:
                await ws.close(code, reason)
            except Exception as exc:  # the socket failed under the close (websockets raises
                failure: Exception | None = exc  # what a reset transport gave, even odd types)
            else:
                failure = None
            refused = ws.protocol.close_rcvd
            if code == 1000 and (failure is not None or refused is None
                                 or refused.code not in _NOT_REFUSALS):
                # The engine refused what was sent (a frame over its bound: 1009), or the
                # socket failed (no close frame came back: the link died, the end may never
                # have arrived; or the handshake timed out, the engine not having read that
                # far yet: it may still arrive): the end is no success. A reader (or channel)
                # that went away first (1011, 1001) is not: it may have taken all it wanted.
                error = (_unconfirmed(ws, self.channel_id)
                         if failure is None and refused is None
                         and isinstance(_connection_exc(ws),
                                        (TimeoutError, asyncio.TimeoutError))
                         else closed_error(ConnectionClosed(refused, None),
                                           f"channel {self.channel_id} writer"))
                raise error from failure
        except BaseException as exc:  # failed or cancelled: the span still ends, as an error
            error = exc
            raise
        finally:
            self._end_transfer(error)

    # ------------------------------------------------------------------ sync twins

    def write_sync(self, data: bytes | bytearray | memoryview) -> None:
        """Blocking :meth:`write`."""
        self._block(self.write, data, what="write_sync")

    def send_message_sync(self, text: str) -> None:
        """Blocking :meth:`send_message`."""
        self._block(self.send_message, text, what="send_message_sync")

    def write_obj_sync(self, obj: Any) -> None:
        """Blocking :meth:`write_obj`."""
        self._block(self.write_obj, obj, what="write_obj_sync")

    def close_sync(self) -> None:
        """Blocking :meth:`close`."""
        self._block(self.close, what="close_sync")

    def abort_sync(self, reason: str = "writer failed") -> None:
        """Blocking :meth:`abort`."""
        self._block(self.abort, reason, what="abort_sync")

    def __enter__(self) -> ChannelWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close_sync()
        else:
            self.abort_sync(abort_reason(exc_type))

    def _block(self, method: Callable[..., Coroutine[Any, Any, T]], *args: Any,
               what: str) -> T:
        return self._affinity.block(method(*args), what)

    # ------------------------------------------------------------------ connection

    def _failed(self, exc: ConnectionClosed) -> BaseException:
        """The socket closed under a write: the writer is closed; the error to raise."""
        if self._broken is not None:
            return self._broken_error()
        self._closed = True
        error = closed_error(exc, f"channel {self.channel_id} writer")
        self._end_transfer(error)
        return error

    async def _yield(self) -> None:
        """Give the loop a turn (see :data:`YIELD_BUDGET`)."""
        self._unyielded = 0
        await asyncio.sleep(0)

    def _cut(self, ws: ClientConnection, sent: int, size: int) -> None:
        """A write stopped (cancelled, interrupted) after ``sent`` of its ``size`` bytes went
        out: fail the channel.

        The engine cannot take frames back, so the stream now has a hole (or, when every frame
        went out, a write its caller was told did not finish: a retry duplicates it). As
        websockets does for a cancelled fragmented message, the connection is closed with 1011,
        which the engine relays to the reader as an error; the close runs in the background
        (the caller is being cancelled), bounded by the close timeout, and every later write
        or ``close()`` raises :class:`ChannelClosedError` naming the cut write.
        """
        if self._broken is not None:
            return
        self._broken = f"a write was cancelled part-way ({sent} of {size} bytes sent)"
        self._closed = True
        self._end_transfer(self._broken)
        self._failing = asyncio.get_running_loop().create_task(
            _close_failed(ws, self._broken), name=f"iii-rx-channel-cut-{self.channel_id}")

    def _broken_error(self) -> ChannelClosedError:
        return ChannelClosedError(
            f"channel {self.channel_id} writer failed: {self._broken}; the channel was ended "
            f"as failed (1011): its reader gets an error, not a stream with a hole",
            code=1011, reason=self._broken or "")

    def _new_lock(self) -> asyncio.Lock:
        self._lock = asyncio.Lock()
        return self._lock

    async def _socket(self) -> ClientConnection:
        if self._broken is not None:
            raise self._broken_error()
        if self._closed:
            raise ChannelClosedError(f"channel {self.channel_id} writer is closed")
        if self._ws is not None:
            return self._ws
        return await self._open()


def _connection_exc(ws: ClientConnection) -> BaseException | None:
    """Why websockets ended the connection (``connection_exc``; ``recv_exc`` before 15.0)."""
    return getattr(ws, "connection_exc", None) or getattr(ws, "recv_exc", None)


def _unconfirmed(ws: ClientConnection, channel_id: str) -> ChannelCloseUnconfirmedError:
    """The closing handshake timed out (websockets then drops the connection): the engine had
    not read the close frame, which waits behind the data it has not read yet either."""
    return ChannelCloseUnconfirmedError(
        f"channel {channel_id} writer: the engine did not confirm the end within "
        f"{ws.close_timeout:g} s: it had not read all that was written yet, most likely because "
        f"its buffer toward the reader is full (is the reader reading?); the data and the end "
        f"may still be delivered, so sending them again may duplicate them")


async def _close_failed(ws: ClientConnection, reason: str) -> None:
    """Close ``ws`` with 1011 and ``reason``, at most its close timeout (10 s) long: the close
    frame waits behind frames the engine may not read (a full pipe), so then the connection
    is dropped, which the engine also reports to the reader as a failure."""
    try:
        await asyncio.wait_for(ws.close(1011, reason), ws.close_timeout or 10.0)
    except asyncio.CancelledError:  # the loop shuts down: don't leave the socket open
        ws.transport.abort()
        raise
    except (asyncio.TimeoutError, Exception):  # also a socket that failed under the close
        ws.transport.abort()
        await ws.wait_closed()
