"""The bounded pipe of frames inside one channel, and the record of who is attached to it."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = [
    "DEFAULT_BUFFER_BYTES",
    "GOING_AWAY",
    "INTERNAL",
    "NORMAL",
    "POLICY",
    "ChannelState",
    "Frame",
    "Pipe",
    "ReaderGone",
    "WriterLost",
    "frame_bytes",
    "stop",
]

Frame = bytes | str

NORMAL, GOING_AWAY, POLICY, INTERNAL = 1000, 1001, 1008, 1011

DEFAULT_BUFFER_BYTES = 1024 * 1024
"""Bytes one channel's pipe may hold (the engine's ``channel_buffer_bytes``)."""


def frame_bytes(frame: Frame) -> int:
    """What ``frame`` counts against a pipe's byte bound.

    Text is counted at 4 bytes a character unless it is ASCII (``isascii`` is O(1)), so the
    bound holds in memory and on the wire without encoding the text.
    """
    if isinstance(frame, bytes):
        return len(frame)
    return len(frame) if frame.isascii() else 4 * len(frame)


class ReaderGone(Exception):
    """Raised in a writer when the pipe can no longer deliver anything."""


class WriterLost(Exception):
    """The writer's connection closed while it waited for room in the pipe."""


class Pipe:
    """Bounded FIFO of frames between one producer and one consumer.

    It holds at most ``capacity`` frames and ``max_bytes`` bytes (:func:`frame_bytes`); a
    frame is always let into an empty pipe, so one bigger frame still passes. ``end`` is set
    once the producer is done (the consumer gets the queued frames, then the end); ``gone``
    once the consumer is (producers fail, the consumer stops at once).
    """

    __slots__ = ("_data", "_space", "capacity", "end", "frames", "gone", "max_bytes",
                 "queued_bytes")

    def __init__(self, capacity: int, max_bytes: int = DEFAULT_BUFFER_BYTES) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.queued_bytes = 0
        """Bytes of the frames held now (what the byte bound applies to)."""
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

        Raises ``ReaderGone`` once the consumer is gone. ``lost`` completes when the producer's
        own connection closes; if ``lost_is_fatal()`` then says the producer failed, the wait
        ends with ``WriterLost`` (otherwise it goes on: frames it sent before closing cleanly
        are still to be delivered).
        """
        size = frame_bytes(frame)
        while self._full(size) and self.gone is None:
            self._space.clear()
            if lost is None or (lost.done() and not lost_is_fatal()):
                await self._space.wait()
                continue
            if lost.done():
                raise WriterLost
            space = asyncio.ensure_future(self._space.wait())
            try:
                await asyncio.wait((space, lost), return_when=asyncio.FIRST_COMPLETED)
            finally:
                await stop(space)
        if self.gone is not None:
            raise ReaderGone(self.gone[1])
        self.frames.append(frame)
        self.queued_bytes += size
        self._data.set()

    def _full(self, size: int) -> bool:
        frames = self.frames
        return bool(frames) and (len(frames) >= self.capacity
                                 or self.queued_bytes + size > self.max_bytes)

    async def get(self) -> Frame | None:
        """The next frame, or None at the end. Cancelling it never loses a frame."""
        while not self.frames and self.end is None and self.gone is None:
            self._data.clear()
            await self._data.wait()
        if self.gone is not None or not self.frames:
            return None
        frame = self.frames.popleft()
        self.queued_bytes -= frame_bytes(frame)
        self._space.set()  # a waiting producer checks again whether its frame fits
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
        self.queued_bytes = 0
        self.finish(code, reason)
        self._space.set()
        if self.gone is None:
            # A consumer still waiting is told the end, not "gone", so it can close properly.
            self.gone = (INTERNAL if code == NORMAL else code, reason or "channel removed")


class ChannelState:
    """One channel as the hub holds it: its pipe and which sides attached and finished.

    A side is *attached* from the moment a socket or a local end takes it (it never detaches:
    a second taker is refused) and *done* once that end has finished.
    """

    __slots__ = (
        "created", "id", "key", "owner", "pipe", "reader_attached", "reader_done",
        "writer_attached", "writer_done", "writer_socket",
    )

    def __init__(self, channel_id: str, key: str, capacity: int, created: float, *,
                 max_bytes: int = DEFAULT_BUFFER_BYTES, owner: str | None = None) -> None:
        self.id = channel_id
        self.key = key
        self.created = created
        self.owner = owner
        """Id of the worker that created it (``None``: the engine's own, e.g. REST bodies)."""
        self.pipe = Pipe(capacity, max_bytes)
        self.writer_socket: Any = None
        """The writer's websocket while one is served (so that removal can close it)."""
        self.writer_attached = False
        self.reader_attached = False
        self.writer_done = False
        self.reader_done = False

    @property
    def connected(self) -> bool:
        """Whether both sides attached and the reader is still there (a writer that finished
        while the reader drains what it sent still counts: the stream is going on)."""
        return self.writer_attached and self.reader_attached and not self.reader_done


async def stop(task: asyncio.Future[Any]) -> None:
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
