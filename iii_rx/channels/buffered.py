"""A buffering front for a :class:`~iii_rx.channels.writer.ChannelWriter`: many small writes,
few frames.

It knows the writer only as :class:`FrameWriter`, so the writer can make buffered fronts of
itself without the two modules importing each other.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from iii_rx.channels._end import EndsWithBlock
from iii_rx.channels._socket import FRAME_SIZE
from iii_rx.channels.cborseq import encode_item

__all__ = ["BufferedChannelWriter", "FrameWriter"]

YIELD_WRITES = 2048
"""Writes that only fill the buffer between two turns the front gives the event loop: the
writer yields per MiB it sends (``writer.YIELD_BUDGET``), but a loop of tiny writes spends most
of its time here, where nothing suspends (2048 appends: about a millisecond)."""


class FrameWriter(Protocol):
    """What the buffered front sends through: the methods of a ``ChannelWriter`` it uses."""

    @property
    def closed(self) -> bool: ...

    async def write(self, data: bytes | bytearray | memoryview, *,
                    frame_size: int = ...) -> None: ...

    async def send_message(self, text: str) -> None: ...

    async def close(self) -> None: ...

    async def abort(self, reason: str = ...) -> None: ...


class BufferedChannelWriter(EndsWithBlock):
    """Collects small binary writes into frames of up to ``size`` bytes (default 64 KiB).

    Per-frame costs (framing, masking, a syscall, the engine's forwarding) dominate small
    writes; gathering them is much faster. Chunk boundaries seen by the reader then no longer
    match the writes, which a byte stream or a CBOR sequence (``write_obj``) never relies on.

    Like ``io.BufferedWriter``, bytes wait in the buffer until it fills, until :meth:`flush`,
    until a text message (sent after the bytes before it, so order holds) or until
    :meth:`close`. Made by :meth:`ChannelWriter.buffered`.

    It serves one producer: a write, flush or close that starts while another one is sending
    raises ``RuntimeError`` (the buffer could not be put back for both if they were cut).
    """

    __slots__ = ("_buffer", "_sending", "_size", "_unyielded", "writer")

    def __init__(self, writer: FrameWriter, size: int = FRAME_SIZE) -> None:
        if not 1 <= size <= FRAME_SIZE:
            raise ValueError(f"size must be within 1..{FRAME_SIZE}, got {size}")
        self.writer = writer
        self._size = size
        self._buffer = bytearray()
        self._unyielded = 0
        self._sending = False

    @property
    def pending(self) -> int:
        """Bytes written but not sent yet."""
        return len(self._buffer)

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Add ``data``; full frames are sent (waiting for flow control), the rest waits.

        Cancelled while sending, it follows the writer's rule: once a frame went out the
        channel fails; before, nothing of ``data`` was sent nor stays buffered.
        """
        self._check_idle()
        if len(self._buffer) + len(data) < self._size:
            self._unyielded += 1
            if self._unyielded >= YIELD_WRITES:  # before data joins the buffer: a cancel
                self._unyielded = 0              # here leaves nothing of it behind
                await asyncio.sleep(0)
                self._check_idle()
            self._buffer += data
            return
        buffer = self._buffer
        before = len(buffer)
        buffer += data
        added = len(buffer) - before
        cut = len(buffer) - len(buffer) % self._size
        frames = bytes(buffer[:cut])
        del buffer[:cut]
        self._sending = True
        try:
            await self.writer.write(frames, frame_size=self._size)
        except BaseException:
            if not self.writer.closed:  # nothing went out: the buffer is as before the call
                buffer[:0] = frames
                del buffer[before:before + added]
            raise
        finally:
            self._sending = False

    async def write_obj(self, obj: Any) -> None:
        """Add ``obj`` as one CBOR item of the channel's CBOR sequence."""
        await self.write(encode_item(obj))

    async def send_message(self, text: str) -> None:
        """Send the buffered bytes, then one text frame."""
        await self.flush()
        await self.writer.send_message(text)

    async def flush(self) -> None:
        """Send whatever is buffered now."""
        self._check_idle()
        if self._buffer:
            data, self._buffer = bytes(self._buffer), bytearray()
            self._sending = True
            try:
                await self.writer.write(data, frame_size=self._size)
            except BaseException:
                if not self.writer.closed:  # nothing went out (see write): keep it buffered
                    self._buffer[:0] = data
                raise
            finally:
                self._sending = False

    def _check_idle(self) -> None:
        if self._sending:
            raise RuntimeError("a BufferedChannelWriter serves one producer: this write began "
                               "while another one was sending (await each write, or give each "
                               "task a writer of its own)")

    async def close(self) -> None:
        """Flush, then end the stream cleanly."""
        await self.flush()
        await self.writer.close()

    async def abort(self, reason: str = "writer failed") -> None:
        """Drop the buffer and end the stream as failed (see ``ChannelWriter.abort``)."""
        self._buffer.clear()
        await self.writer.abort(reason)
