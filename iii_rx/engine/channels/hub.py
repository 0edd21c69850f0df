"""``ChannelHub``: every channel of one engine, who may attach to it, and when it goes away."""

from __future__ import annotations

import asyncio
import hmac
import logging
import uuid
from types import TracebackType
from typing import Any, Literal

from websockets.asyncio.server import ServerConnection

from iii_rx.aio import TaskSet
from iii_rx.engine.channels.local import LocalChannelReader, LocalChannelWriter
from iii_rx.engine.channels.pipe import GOING_AWAY, INTERNAL, NORMAL, POLICY, ChannelState
from iii_rx.engine.channels.sockets import serve_reader, serve_writer

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "MAX_BUFFER_SIZE",
    "ChannelHub",
    "ChannelUnavailable",
    "Direction",
]

log = logging.getLogger("iii_rx.engine.channels")

Direction = Literal["read", "write"]

DEFAULT_BUFFER_SIZE = 64
MAX_BUFFER_SIZE = 1024
_CLOSE_TIMEOUT = 1.0


class ChannelUnavailable(LookupError):
    """The channel does not exist (any more), or the side asked for is already taken.

    ``close_reason`` is the short reason a websocket refused for this gets with its 1008 close.
    """

    def __init__(self, message: str, close_reason: str) -> None:
        super().__init__(message)
        self.close_reason = close_reason


class ChannelHub:
    """All channels of one engine: creation, authorisation, one reader and one writer each.

    ``sweep_interval_s`` and ``max_age_s`` are the spec's 60 s and 5 minutes; tests pass
    milliseconds.
    """

    def __init__(self, *, sweep_interval_s: float = 60.0, max_age_s: float = 300.0) -> None:
        self.sweep_interval_s = sweep_interval_s
        self.max_age_s = max_age_s
        self._channels: dict[str, ChannelState] = {}
        self._tasks = TaskSet("the channel hub")
        self._sweeping = False
        self._closed = False

    # ------------------------------------------------------------------ lifetime

    async def start(self) -> None:
        """Start the background sweep of half-open channels."""
        if not self._sweeping and not self._closed:
            self._sweeping = True
            self._tasks.spawn(self._sweep_forever(), name="iii-rx-channel-sweep")

    async def close(self) -> None:
        """Stop the sweep and end every channel (attached sockets get a 1001 close)."""
        self._closed = True
        await self._tasks.aclose()
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
        self._channels[channel_id] = ChannelState(channel_id, key, capacity, loop.time())
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

    # ------------------------------------------------------------------ ends

    async def serve(self, websocket: ServerConnection, channel_id: str,
                    direction: Direction) -> None:
        """Run one end of a channel on an accepted websocket until it ends."""
        # A socket whose reading is paused by backpressure cannot read the peer's close frame:
        # don't let a close handshake wait the library's default 10 s for it.
        websocket.close_timeout = _CLOSE_TIMEOUT
        if direction not in ("read", "write"):
            await websocket.close(POLICY, f"unknown channel direction {direction!r}")
            return
        try:
            channel = self._attach(channel_id, direction)
        except ChannelUnavailable as exc:
            await websocket.close(POLICY, exc.close_reason)
            return
        try:
            if direction == "write":
                await serve_writer(channel.pipe, websocket, channel.id)
            else:
                await serve_reader(channel.pipe, websocket, channel.id)
        finally:
            if direction == "write":
                channel.writer_done = True
            else:
                channel.reader_done = True
            self._forget_if_done(channel)

    def local_reader(self, channel_id: str) -> LocalChannelReader:
        """Attach the engine itself as the reader of ``channel_id``.

        Raises :class:`ChannelUnavailable` for an unknown id or a reader already attached.
        """
        return LocalChannelReader(self._attach(channel_id, "read"), self._forget_if_done)

    def local_writer(self, channel_id: str) -> LocalChannelWriter:
        """Attach the engine itself as the writer of ``channel_id``.

        Raises :class:`ChannelUnavailable` for an unknown id or a writer already attached.
        """
        return LocalChannelWriter(self._attach(channel_id, "write"), self._forget_if_done)

    def _attach(self, channel_id: str, direction: Direction) -> ChannelState:
        """Take one side of ``channel_id`` (a socket or a local end), at most once a side."""
        channel = self._channels.get(channel_id)
        if channel is None:
            raise ChannelUnavailable(f"channel {channel_id!r} not found", "channel not found")
        side = "writer" if direction == "write" else "reader"
        if channel.writer_attached if direction == "write" else channel.reader_attached:
            raise ChannelUnavailable(f"channel {channel_id!r} already has a {side}",
                                     f"channel {side} already connected")
        if direction == "write":
            channel.writer_attached = True
        else:
            channel.reader_attached = True
        return channel

    def _forget_if_done(self, channel: ChannelState) -> None:
        if channel.writer_done and channel.reader_done:
            self._channels.pop(channel.id, None)

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


def _capacity(buffer_size: object) -> int:
    if buffer_size is None:
        return DEFAULT_BUFFER_SIZE
    if isinstance(buffer_size, float) and buffer_size.is_integer():
        buffer_size = int(buffer_size)
    if isinstance(buffer_size, bool) or not isinstance(buffer_size, int):
        raise ValueError(f"buffer_size must be an integer, got {buffer_size!r}")
    return max(1, min(MAX_BUFFER_SIZE, buffer_size))
