"""The in-process ends of a channel: the engine itself reading or writing (REST bodies)."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from iii_rx.engine.channels.pipe import INTERNAL, NORMAL, ChannelState, Frame, ReaderGone

__all__ = ["FRAME_SIZE", "LocalChannelReader", "LocalChannelWriter"]

FRAME_SIZE = 64 * 1024
"""Local writers split larger buffers into frames of this size, as the SDK writers do."""

_End = TypeVar("_End", bound="_LocalEnd")


class _LocalEnd:
    """What both local ends share: their channel, and telling the hub once they are done."""

    __slots__ = ("_channel", "_closed", "_forget")

    def __init__(self, channel: ChannelState, forget: Callable[[ChannelState], None]) -> None:
        self._channel = channel
        self._forget = forget  # the hub drops the channel once both sides are done
        self._closed = False

    @property
    def channel_id(self) -> str:
        return self._channel.id

    async def __aenter__(self: _End) -> _End:
        return self


class LocalChannelReader(_LocalEnd):
    """The engine's own reading end of a channel.

    ``await receive()`` gives frames in order (``bytes`` binary, ``str`` text) and ``None`` at
    the end; it may be cancelled without losing a frame. ``async for`` does the same.
    :attr:`end_code` tells a clean end (1000) from a writer that was lost (1011).
    ``aclose()`` detaches: a writer still sending is failed, as with a websocket reader.
    """

    __slots__ = ()

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
            self._forget(self._channel)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class LocalChannelWriter(_LocalEnd):
    """The engine's own writing end of a channel.

    ``write`` splits data into 64 KiB binary frames and waits while the pipe is full;
    ``send_message`` sends one text frame; ``close`` ends the stream cleanly and ``abort`` ends
    it as failed (a websocket reader gets 1011). Writing after the reader went away raises
    :class:`ConnectionError`.
    """

    __slots__ = ()

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
        except ReaderGone as exc:
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
        self._forget(self._channel)

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
