"""``ChannelHub``: every channel of one engine, who may attach to it, and when it goes away.

Bounds (docs/guarantees.md, "Bounds and fault detection"): a pipe holds at most
``buffer_size`` frames and ``buffer_bytes`` bytes; a writer's socket buffers at most a few
frames more before TCP pushes back; a worker may hold ``max_per_owner`` live channels it
created. When it leaves, those no side attached to (or whose reader left) go; those with an
end waiting for the other stay until the sweep, at most ``max_per_owner`` of them for all
departed creators together (the oldest go first).
"""

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
from iii_rx.engine.channels.pipe import (
    DEFAULT_BUFFER_BYTES,
    GOING_AWAY,
    INTERNAL,
    POLICY,
    ChannelState,
)
from iii_rx.engine.channels.sockets import serve_reader, serve_writer
from iii_rx.engine.socket_limits import set_message_limit
from iii_rx.errors import IIIInvocationError

__all__ = [
    "CHANNEL_LIMIT",
    "DEFAULT_BUFFER_BYTES",
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_MAX_PER_OWNER",
    "MAX_BUFFER_SIZE",
    "ChannelHub",
    "ChannelUnavailable",
    "Direction",
]

log = logging.getLogger("iii_rx.engine.channels")

Direction = Literal["read", "write"]

DEFAULT_BUFFER_SIZE = 64
MAX_BUFFER_SIZE = 1024
DEFAULT_MAX_PER_OWNER = 256
MAX_CHANNEL_FRAME = 16 * 1024 * 1024
"""The largest frame a channel writer may send (unless ``buffer_bytes`` is larger): the Rust
engine's bound, so that a Node writer's large message arrives here as it does there (the
SDKs' writers cut data into 64 KiB frames; the official Python reader refuses over 1 MiB)."""
CHANNEL_LIMIT = "channel_limit_exceeded"
"""Error code of ``engine::channels::create`` past ``max_per_owner``."""
_CLOSE_TIMEOUT = 1.0
_WRITER_QUEUE = (4, 1)
"""High and low water, in frames, of what a writer's socket reads ahead of the pipe: with the
server's default (64) a writer of big frames would park 64 of them in the engine."""


class ChannelUnavailable(LookupError):
    """The channel does not exist (any more), or the side asked for is already taken.

    ``close_reason`` is the short reason a websocket refused for this gets with its 1008 close.
    """

    def __init__(self, message: str, close_reason: str) -> None:
        super().__init__(message)
        self.close_reason = close_reason


class ChannelHub:
    """All channels of one engine: creation, authorisation, one reader and one writer each.

    ``sweep_interval_s`` and ``max_age_s`` are the protocol's 60 s and 5 minutes; tests pass
    milliseconds. ``buffer_bytes`` bounds each pipe; ``max_per_owner`` the live channels one
    worker created (0 = no cap).
    """

    def __init__(self, *, sweep_interval_s: float = 60.0, max_age_s: float = 300.0,
                 buffer_bytes: int = DEFAULT_BUFFER_BYTES,
                 max_per_owner: int = DEFAULT_MAX_PER_OWNER) -> None:
        self.sweep_interval_s = sweep_interval_s
        self.max_age_s = max_age_s
        self.buffer_bytes = buffer_bytes
        self.max_per_owner = max_per_owner
        self._channels: dict[str, ChannelState] = {}
        self._owned: dict[str, dict[str, None]] = {}
        """The live channels each worker created, oldest first."""
        self._orphans: dict[str, None] = {}
        """Channels kept for their ends after their creator left, oldest first: no worker's
        cap counts them, so they have a cap of their own (``max_per_owner``), else a worker
        reconnecting in a loop would leave a full cap of buffered channels each time."""
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
        self._owned.clear()
        self._orphans.clear()

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

    def create(self, buffer_size: int | None = None, owner: str | None = None) -> dict[str, Any]:
        """Make a channel; returns ``{"writer": ref, "reader": ref}`` (refs as JSON dicts).

        ``buffer_size`` counts frames: default 64, capped at 1024 (and at least 1); the pipe
        holds ``buffer_bytes`` at most besides. ``owner`` is the creating worker's id. Raises
        ``ValueError`` for a value that is not an integer, and ``IIIInvocationError``
        (``channel_limit_exceeded``) when ``owner`` already holds ``max_per_owner`` channels.
        """
        if self._closed:
            raise RuntimeError("the channel hub is closed")
        capacity = _capacity(buffer_size)
        owned = self._owned.get(owner) if owner is not None else None
        if owned is not None and 0 < self.max_per_owner <= len(owned):
            raise IIIInvocationError(CHANNEL_LIMIT, (
                f"this worker already holds {len(owned)} channels (the engine's "
                f"max_channels_per_worker); close or finish one first"))
        channel_id, key = str(uuid.uuid4()), str(uuid.uuid4())
        loop = asyncio.get_running_loop()
        self._channels[channel_id] = ChannelState(channel_id, key, capacity, loop.time(),
                                                  max_bytes=self.buffer_bytes, owner=owner)
        if owner is not None:
            self._owned.setdefault(owner, {})[channel_id] = None
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
        channel = self._discard(channel_id)
        if channel is None:
            return
        if not channel.pipe.delivered:
            self._drop(channel, INTERNAL, "channel removed by the engine")

    def release_owner(self, owner: str) -> int:
        """Free the channels ``owner`` created that nobody uses any more (it left).

        A channel stays while an end may still get what it waits for: both ends connected,
        a reader waiting for its writer, or a writer whose reader has not come yet (the sweep
        bounds the last two). It goes when no side ever attached, or its reader left (a
        writer still there is closed with 1011). A reader waiting on a reconnecting
        creator's channel must not be ended: it would read an empty stream as complete.
        Returns how many were removed.
        """
        removed = 0
        for channel_id in list(self._owned.pop(owner, ())):
            channel = self._channels.get(channel_id)
            if channel is None:
                continue
            channel.owner = None
            reader_waiting = channel.reader_attached and not channel.reader_done
            if reader_waiting or (channel.writer_attached and not channel.reader_attached):
                self._orphans[channel_id] = None
                continue
            self._channels.pop(channel_id, None)
            removed += 1
            self._drop(channel, INTERNAL, "channel removed: its creator left")
        return removed + self._trim_orphans()

    def _trim_orphans(self) -> int:
        """Remove the oldest kept channels past ``max_per_owner``; one whose ends are both
        connected since streams on and is not counted."""
        if self.max_per_owner <= 0:
            return 0
        waiting = [channel_id for channel_id in self._orphans
                   if (kept := self._channels.get(channel_id)) is None or not kept.connected]
        excess = waiting[:max(0, len(waiting) - self.max_per_owner)]
        for channel_id in excess:
            channel = self._discard(channel_id)
            if channel is not None:
                self._drop(channel, INTERNAL, "channel removed: its creator left, and too "
                           "many channels of departed creators are kept")
        return len(excess)

    def owned_by(self, owner: str) -> int:
        """How many live channels ``owner`` created (what ``max_per_owner`` caps)."""
        return len(self._owned.get(owner, ()))

    def channel_state(self, channel_id: str) -> ChannelState | None:
        """The hub's record of ``channel_id`` (tests and tools read its pipe's accounting)."""
        return self._channels.get(channel_id)

    def _drop(self, channel: ChannelState, code: int, reason: str) -> None:
        """End a channel now; a writer socket is closed at once, not at its next frame."""
        channel.pipe.drop(code, reason)
        socket = channel.writer_socket
        if socket is not None and not self._tasks.closed:
            self._tasks.spawn(_close(socket, INTERNAL, reason or "channel removed"),
                              name=f"iii-rx-channel-close-{channel.id}")

    def _discard(self, channel_id: str) -> ChannelState | None:
        self._orphans.pop(channel_id, None)
        channel = self._channels.pop(channel_id, None)
        if channel is not None and channel.owner is not None:
            owned = self._owned.get(channel.owner)
            if owned is not None:
                owned.pop(channel_id, None)
                if not owned:
                    del self._owned[channel.owner]
        return channel

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
                _limit_read_ahead(websocket)
                # The worker port's 64 MiB would let the few frames read ahead hold hundreds
                # of MiB per channel.
                set_message_limit(websocket, max(self.buffer_bytes, MAX_CHANNEL_FRAME))
                channel.writer_socket = websocket
                await serve_writer(channel.pipe, websocket, channel.id)
            else:
                await serve_reader(channel.pipe, websocket, channel.id)
        finally:
            if direction == "write":
                channel.writer_socket = None
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
        """One side finished: forget the channel once both did.

        A reader that left before the end is told to the writer at its next frame (1011),
        not at once: the official SDKs' writers treat a close they did not ask for badly (a
        Node writer's ``end(callback)`` never calls back; a Python writer's next write
        raises where the Rust engine lets it through). A writer that stays idle keeps the
        channel only until the sweep or its creator's departure, which count a reader that
        left as gone (:attr:`ChannelState.connected`), as the Rust engine's sweep does.
        """
        if channel.writer_done and channel.reader_done and \
                self._channels.get(channel.id) is channel:
            self._discard(channel.id)

    # ------------------------------------------------------------------ sweep

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            self.sweep()

    def sweep(self) -> int:
        """Remove channels older than ``max_age_s`` with a side that never connected (or a
        reader that left).

        Runs every ``sweep_interval_s`` once started; returns how many were removed.
        """
        now = asyncio.get_running_loop().time()
        stale = [
            channel for channel in self._channels.values()
            if now - channel.created >= self.max_age_s and not channel.connected
        ]
        for channel in stale:
            self._discard(channel.id)
            # A reader left waiting fails too: an empty stream is not what it was promised.
            self._drop(channel, INTERNAL, "channel expired: no reader connected"
                       if channel.writer_attached else "channel expired: no writer connected")
            log.debug("channel %s swept (writer %s, reader %s)", channel.id,
                      channel.writer_attached, channel.reader_attached)
        return len(stale)


async def _close(websocket: ServerConnection, code: int, reason: str) -> None:
    try:
        await websocket.close(code, reason)
    except Exception:  # already gone
        log.debug("closing a channel socket failed", exc_info=True)


def _limit_read_ahead(websocket: ServerConnection) -> None:
    """Let a writer's socket read only a few frames ahead of a full pipe (TCP does the rest)."""
    assembler = getattr(websocket, "recv_messages", None)
    if assembler is not None and hasattr(assembler, "high") and hasattr(assembler, "low"):
        assembler.high, assembler.low = _WRITER_QUEUE


def _capacity(buffer_size: object) -> int:
    if buffer_size is None:
        return DEFAULT_BUFFER_SIZE
    if isinstance(buffer_size, float) and buffer_size.is_integer():
        buffer_size = int(buffer_size)
    if isinstance(buffer_size, bool) or not isinstance(buffer_size, int):
        raise ValueError(f"buffer_size must be an integer, got {buffer_size!r}")
    return max(1, min(MAX_BUFFER_SIZE, buffer_size))
