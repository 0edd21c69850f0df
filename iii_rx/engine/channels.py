"""Channel hub of the embedded engine (spec section 7).

A channel is a one-way pipe of websocket frames between exactly one writer and one reader,
each a websocket on ``/ws/channels/{id}?key=..&dir=..`` or an end held by the engine itself
(:meth:`ChannelHub.local_reader`, :meth:`ChannelHub.local_writer`, used by the REST API for
request bodies and streamed responses).

Flow control is end to end: the pipe holds at most ``buffer_size`` frames; when it is full the
writer's pump stops reading the writer's socket, websockets stops reading the TCP stream once
its own small queue fills, and the writer's ``send`` blocks. A reader that connects late gets
everything queued, in order. Text and binary frames keep their type and order.

How a channel ends (close codes seen by the websocket peers):

- writer closes cleanly (close code 1000/1001) -> the reader gets the rest of the frames, then
  a 1000 close: the clean end of stream;
- writer's connection is lost, or it closes with an error code -> the reader gets the rest of
  the frames, then a 1011 close. (The Rust engine closes the reader normally here, so readers
  cannot rely on this; iii_rx readers raise on it, other readers see a normal end.)
- reader goes away before the end -> the writer is closed with 1011 (its next ``send`` fails);
- a second socket for a side already taken -> closed at once with 1008;
- the sweep removes channels older than ``max_age_s`` with a side that never connected: a
  waiting reader gets 1000 (nothing was written), a blocked writer gets 1011;
- engine shutdown (:meth:`ChannelHub.close`) -> every attached socket gets 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import uuid
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "FRAME_SIZE",
    "MAX_BUFFER_SIZE",
    "ChannelHub",
    "ChannelUnavailable",
    "Direction",
    "LocalChannelReader",
    "LocalChannelWriter",
]

log = logging.getLogger("iii_rx.engine.channels")

Direction = Literal["read", "write"]
Frame = bytes | str

DEFAULT_BUFFER_SIZE = 64
MAX_BUFFER_SIZE = 1024
FRAME_SIZE = 64 * 1024
"""Local writers split larger buffers into frames of this size, as the SDK writers do."""

NORMAL, GOING_AWAY, POLICY, INTERNAL = 1000, 1001, 1008, 1011
_CLOSE_TIMEOUT = 1.0


class ChannelUnavailable(LookupError):
    """The channel does not exist (any more), or the side asked for is already taken."""


class _ReaderGone(Exception):
    """Raised in a writer when the pipe can no longer deliver anything."""


class _WriterLost(Exception):
    """The writer's connection closed while it waited for room in the pipe."""


class _Pipe:
    """Bounded FIFO of frames between one producer and one consumer.

    ``end`` is set once the producer is done (the consumer gets the queued frames, then the
    end); ``gone`` once the consumer is (producers fail, the consumer stops at once).
    """

    __slots__ = ("_data", "_space", "capacity", "end", "frames", "gone")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.frames: deque[Frame] = deque()
        self.end: tuple[int, str] | None = None
        self.gone: tuple[int, str] | None = None
        self._data = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    @property
    def delivered(self) -> bool:
        """Whether the producer ended cleanly and the consumer took every frame."""
        return self.end is not None and self.end[0] == NORMAL and not self.frames

    async def put(
        self,
        frame: Frame,
        lost: asyncio.Future[Any] | None = None,
        lost_is_fatal: Callable[[], bool] = lambda: True,
    ) -> None:
        """Append ``frame``, waiting while the pipe is full.

        Raises ``_ReaderGone`` once the consumer is gone. ``lost`` completes when the producer's
        own connection closes; if ``lost_is_fatal()`` then says the producer failed, the wait
        ends with ``_WriterLost`` (otherwise it goes on: frames it sent before closing cleanly
        are still to be delivered).
        """
        while len(self.frames) >= self.capacity and self.gone is None:
            self._space.clear()
            if lost is None or (lost.done() and not lost_is_fatal()):
                await self._space.wait()
                continue
            if lost.done():
                raise _WriterLost
            space = asyncio.ensure_future(self._space.wait())
            try:
                await asyncio.wait((space, lost), return_when=asyncio.FIRST_COMPLETED)
            finally:
                await _stop(space)
        if self.gone is not None:
            raise _ReaderGone(self.gone[1])
        self.frames.append(frame)
        self._data.set()

    async def get(self) -> Frame | None:
        """The next frame, or None at the end. Cancelling it never loses a frame."""
        while not self.frames and self.end is None and self.gone is None:
            self._data.clear()
            await self._data.wait()
        if self.gone is not None or not self.frames:
            return None
        frame = self.frames.popleft()
        if len(self.frames) < self.capacity:
            self._space.set()
        return frame

    def finish(self, code: int, reason: str) -> None:
        """The producer is done; the first call decides the code the consumer ends with."""
        if self.end is None:
            self.end = (code, reason)
        self._data.set()

    def consumer_gone(self, code: int, reason: str) -> None:
        """The consumer will read no more: producers fail with ``code``/``reason``."""
        if self.gone is None:
            self.gone = (code, reason)
        self._space.set()
        self._data.set()

    def drop(self, code: int, reason: str) -> None:
        """Discard what is queued and end both sides now (removal, sweep, shutdown)."""
        self.frames.clear()
        self.finish(code, reason)
        self._space.set()
        if self.gone is None:
            # A consumer still waiting is told the end, not "gone", so it can close properly.
            self.gone = (INTERNAL if code == NORMAL else code, reason or "channel removed")


class _Channel:
    __slots__ = (
        "created", "id", "key", "pipe", "reader_attached", "reader_done", "writer_attached",
        "writer_done",
    )

    def __init__(self, channel_id: str, key: str, capacity: int, created: float) -> None:
        self.id = channel_id
        self.key = key
        self.created = created
        self.pipe = _Pipe(capacity)
        self.writer_attached = False
        self.reader_attached = False
        self.writer_done = False
        self.reader_done = False


class ChannelHub:
    """All channels of one engine: creation, authorisation, one reader and one writer each.

    ``sweep_interval_s`` and ``max_age_s`` are the spec's 60 s and 5 minutes; tests pass
    milliseconds.
    """

    def __init__(self, *, sweep_interval_s: float = 60.0, max_age_s: float = 300.0) -> None:
        self.sweep_interval_s = sweep_interval_s
        self.max_age_s = max_age_s
        self._channels: dict[str, _Channel] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifetime

    async def start(self) -> None:
        """Start the background sweep of half-open channels."""
        if self._sweeper is None and not self._closed:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep_forever(), name="iii-rx-channel-sweep"
            )

    async def close(self) -> None:
        """Stop the sweep and end every channel (attached sockets get a 1001 close)."""
        self._closed = True
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            await _stop(sweeper)
        for channel in list(self._channels.values()):
            channel.pipe.drop(GOING_AWAY, "engine shutting down")
        self._channels.clear()

    async def __aenter__(self) -> ChannelHub:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ channels

    def create(self, buffer_size: int | None = None) -> dict[str, Any]:
        """Make a channel; returns ``{"writer": ref, "reader": ref}`` (refs as JSON dicts).

        ``buffer_size`` counts frames: default 64, capped at 1024 (and at least 1). Raises
        ``ValueError`` for a value that is not an integer.
        """
        if self._closed:
            raise RuntimeError("the channel hub is closed")
        capacity = _capacity(buffer_size)
        channel_id, key = str(uuid.uuid4()), str(uuid.uuid4())
        loop = asyncio.get_running_loop()
        self._channels[channel_id] = _Channel(channel_id, key, capacity, loop.time())
        ref = {"channel_id": channel_id, "access_key": key}
        return {"writer": {**ref, "direction": "write"}, "reader": {**ref, "direction": "read"}}

    def authorize(self, channel_id: str, access_key: str) -> bool:
        """Whether ``channel_id`` exists and ``access_key`` is its key (else HTTP 404)."""
        channel = self._channels.get(channel_id)
        return channel is not None and hmac.compare_digest(
            channel.key.encode(), access_key.encode()
        )

    def remove(self, channel_id: str) -> None:
        """Drop a channel now: queued frames are discarded and attached ends are ended.

        A reader that already got everything the writer sent sees a clean end; otherwise
        attached sockets get a 1011 close. Unknown ids are ignored.
        """
        channel = self._channels.pop(channel_id, None)
        if channel is None:
            return
        if not channel.pipe.delivered:
            channel.pipe.drop(INTERNAL, "channel removed by the engine")

    def __len__(self) -> int:
        return len(self._channels)

    def __contains__(self, channel_id: object) -> bool:
        return channel_id in self._channels

    # ------------------------------------------------------------------ websocket ends

    async def serve(self, websocket: ServerConnection, channel_id: str,
                    direction: Direction) -> None:
        """Run one end of a channel on an accepted websocket until it ends."""
        # A socket whose reading is paused by backpressure cannot read the peer's close frame:
        # don't let a close handshake wait the library's default 10 s for it.
        websocket.close_timeout = _CLOSE_TIMEOUT
        channel = self._channels.get(channel_id)
        if channel is None:
            await websocket.close(POLICY, "channel not found")
            return
        if direction == "write":
            if channel.writer_attached:
                await websocket.close(POLICY, "channel writer already connected")
                return
            channel.writer_attached = True
            try:
                await self._serve_writer(channel, websocket)
            finally:
                channel.writer_done = True
                self._forget_if_done(channel)
        elif direction == "read":
            if channel.reader_attached:
                await websocket.close(POLICY, "channel reader already connected")
                return
            channel.reader_attached = True
            try:
                await self._serve_reader(channel, websocket)
            finally:
                channel.reader_done = True
                self._forget_if_done(channel)
        else:
            await websocket.close(POLICY, f"unknown channel direction {direction!r}")

    async def _serve_writer(self, channel: _Channel, ws: ServerConnection) -> None:
        pipe = channel.pipe
        # Wakes a put() blocked on a full pipe when the writer's connection goes away.
        lost = asyncio.ensure_future(ws.wait_closed())
        try:
            # While put() waits for space nothing reads the socket: TCP backpressure.
            async for frame in ws:
                await pipe.put(frame, lost, lambda: not _writer_closed_cleanly(ws))
        except _ReaderGone:
            code, reason = pipe.gone or (INTERNAL, "channel reader went away")
            # Reading was paused by backpressure: drain the socket so the close handshake
            # (the writer's answering close frame) gets through without waiting for a timeout.
            drain = asyncio.ensure_future(_discard(ws))
            try:
                await ws.close(code, reason)
            finally:
                await _stop(drain)
            return
        except (ConnectionClosed, _WriterLost) as exc:
            log.debug("channel %s: writer connection lost (%r)", channel.id, exc)
            pipe.finish(INTERNAL, "channel writer disconnected before closing")
            return
        finally:
            await _stop(lost)
        if _writer_closed_cleanly(ws):
            pipe.finish(NORMAL, "")
        else:
            pipe.finish(INTERNAL, f"channel writer closed with code {ws.close_code}")

    async def _serve_reader(self, channel: _Channel, ws: ServerConnection) -> None:
        pipe = channel.pipe
        # Readers send nothing useful. Reading their socket notices a reader that leaves while
        # the pipe is idle, and keeps control frames from being stuck behind unread data.
        watch = asyncio.get_running_loop().create_task(
            _watch_reader(ws, pipe), name=f"iii-rx-channel-reader-{channel.id}"
        )
        try:
            while (frame := await pipe.get()) is not None:
                await ws.send(frame)
            if not watch.done():
                code, reason = pipe.end if pipe.end is not None else pipe.gone or (NORMAL, "")
                await ws.close(code, reason)
        except ConnectionClosed:
            pipe.consumer_gone(INTERNAL, "channel reader went away")
        finally:
            await _stop(watch)

    def _forget_if_done(self, channel: _Channel) -> None:
        if channel.writer_done and channel.reader_done:
            self._channels.pop(channel.id, None)

    # ------------------------------------------------------------------ in-process ends

    def local_reader(self, channel_id: str) -> LocalChannelReader:
        """Attach the engine itself as the reader of ``channel_id``.

        Raises :class:`ChannelUnavailable` for an unknown id or a reader already attached.
        """
        channel = self._attach(channel_id, "read")
        return LocalChannelReader(self, channel)

    def local_writer(self, channel_id: str) -> LocalChannelWriter:
        """Attach the engine itself as the writer of ``channel_id``.

        Raises :class:`ChannelUnavailable` for an unknown id or a writer already attached.
        """
        channel = self._attach(channel_id, "write")
        return LocalChannelWriter(self, channel)

    def _attach(self, channel_id: str, direction: Direction) -> _Channel:
        channel = self._channels.get(channel_id)
        if channel is None:
            raise ChannelUnavailable(f"channel {channel_id!r} not found")
        if direction == "write":
            if channel.writer_attached:
                raise ChannelUnavailable(f"channel {channel_id!r} already has a writer")
            channel.writer_attached = True
        else:
            if channel.reader_attached:
                raise ChannelUnavailable(f"channel {channel_id!r} already has a reader")
            channel.reader_attached = True
        return channel

    # ------------------------------------------------------------------ sweep

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            self.sweep()

    def sweep(self) -> int:
        """Remove channels older than ``max_age_s`` with a side that never connected.

        Runs every ``sweep_interval_s`` once started; returns how many were removed.
        """
        now = asyncio.get_running_loop().time()
        stale = [
            channel for channel in self._channels.values()
            if now - channel.created >= self.max_age_s
            and not (channel.writer_attached and channel.reader_attached)
        ]
        for channel in stale:
            self._channels.pop(channel.id, None)
            if channel.writer_attached:
                channel.pipe.drop(INTERNAL, "channel expired: no reader connected")
            else:
                channel.pipe.drop(NORMAL, "")
            log.debug("channel %s swept (writer %s, reader %s)", channel.id,
                      channel.writer_attached, channel.reader_attached)
        return len(stale)


class LocalChannelReader:
    """The engine's own reading end of a channel.

    ``await receive()`` gives frames in order (``bytes`` binary, ``str`` text) and ``None`` at
    the end; it may be cancelled without losing a frame. ``async for`` does the same.
    :attr:`end_code` tells a clean end (1000) from a writer that was lost (1011).
    ``aclose()`` detaches: a writer still sending is failed, as with a websocket reader.
    """

    __slots__ = ("_channel", "_closed", "_hub")

    def __init__(self, hub: ChannelHub, channel: _Channel) -> None:
        self._hub = hub
        self._channel = channel
        self._closed = False

    @property
    def channel_id(self) -> str:
        return self._channel.id

    @property
    def writer_connected(self) -> bool:
        """Whether a writer has attached to the channel (it stays True once it has)."""
        return self._channel.writer_attached

    @property
    def end_code(self) -> int | None:
        """1000 for a clean end, 1011 (or 1001) otherwise; None while the stream is open."""
        end = self._channel.pipe.end
        return None if end is None else end[0]

    async def receive(self) -> Frame | None:
        """The next frame, or ``None`` once the channel has ended."""
        if self._closed:
            return None
        frame = await self._channel.pipe.get()
        if frame is None:
            self._finish()
        return frame

    def __aiter__(self) -> LocalChannelReader:
        return self

    async def __anext__(self) -> Frame:
        frame = await self.receive()
        if frame is None:
            raise StopAsyncIteration
        return frame

    async def aclose(self) -> None:
        """Stop reading; a writer that has not finished is failed (1011)."""
        if self._closed:
            return
        if not self._channel.pipe.delivered:
            self._channel.pipe.consumer_gone(INTERNAL, "channel reader went away")
        self._finish()

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            self._channel.reader_done = True
            self._hub._forget_if_done(self._channel)

    async def __aenter__(self) -> LocalChannelReader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class LocalChannelWriter:
    """The engine's own writing end of a channel.

    ``write`` splits data into 64 KiB binary frames and waits while the pipe is full;
    ``send_message`` sends one text frame; ``close`` ends the stream cleanly and ``abort`` ends
    it as failed (a websocket reader gets 1011). Writing after the reader went away raises
    :class:`ConnectionError`.
    """

    __slots__ = ("_channel", "_closed", "_hub")

    def __init__(self, hub: ChannelHub, channel: _Channel) -> None:
        self._hub = hub
        self._channel = channel
        self._closed = False

    @property
    def channel_id(self) -> str:
        return self._channel.id

    @property
    def reader_connected(self) -> bool:
        """Whether a reader has attached to the channel (it stays True once it has)."""
        return self._channel.reader_attached

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` as binary frames of at most 64 KiB."""
        view = memoryview(data)
        if not view.nbytes:
            return
        for start in range(0, view.nbytes, FRAME_SIZE):
            await self.send(bytes(view[start : start + FRAME_SIZE]))

    async def send_message(self, text: str) -> None:
        """Send one text frame."""
        await self.send(text)

    async def send(self, frame: Frame) -> None:
        """Send one frame as it is."""
        if self._closed:
            raise ConnectionError("channel writer is closed")
        try:
            await self._channel.pipe.put(frame)
        except _ReaderGone as exc:
            raise ConnectionError(f"channel {self._channel.id}: {exc}") from None

    async def close(self) -> None:
        """End the stream cleanly: the reader gets what was queued, then the end."""
        self._end(NORMAL, "")

    async def abort(self, reason: str = "channel writer failed") -> None:
        """End the stream as failed: the reader gets what was queued, then a 1011 close."""
        self._end(INTERNAL, reason)

    def _end(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._channel.pipe.finish(code, reason)
        self._channel.writer_done = True
        self._hub._forget_if_done(self._channel)

    async def __aenter__(self) -> LocalChannelWriter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.close()
        else:
            await self.abort(f"channel writer failed: {exc_type.__name__ if exc_type else ''}")


# ---------------------------------------------------------------------- helpers


def _capacity(buffer_size: object) -> int:
    if buffer_size is None:
        return DEFAULT_BUFFER_SIZE
    if isinstance(buffer_size, float) and buffer_size.is_integer():
        buffer_size = int(buffer_size)
    if isinstance(buffer_size, bool) or not isinstance(buffer_size, int):
        raise ValueError(f"buffer_size must be an integer, got {buffer_size!r}")
    return max(1, min(MAX_BUFFER_SIZE, buffer_size))


def _writer_closed_cleanly(ws: ServerConnection) -> bool:
    """Whether the writer ended the stream itself with a normal close (1000 or 1001).

    A close that the engine started (shutdown) or a connection dropped without a close frame
    is not a clean end. Frames that arrived before a clean close are still delivered.
    """
    protocol = ws.protocol
    received = protocol.close_rcvd
    return (received is not None and received.code in (NORMAL, GOING_AWAY)
            and protocol.close_rcvd_then_sent is not False)


async def _stop(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` unless it is done, and wait until it is.

    A cancellation of the caller still propagates (``asyncio.wait`` does not raise the task's
    own ``CancelledError``, so nothing needs suppressing); a failure of the task is raised
    here rather than left unretrieved.
    """
    if not task.done():
        task.cancel()
        await asyncio.wait((task,))
    if not task.cancelled():
        task.result()


async def _discard(ws: ServerConnection) -> None:
    """Read and drop frames until the socket closes."""
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass


async def _watch_reader(ws: ServerConnection, pipe: _Pipe) -> None:
    """Read (and drop) whatever a reader sends until its socket closes; then it is gone."""
    await _discard(ws)
    if not pipe.delivered:
        pipe.consumer_gone(INTERNAL, "channel reader went away")
