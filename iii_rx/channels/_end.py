"""What a channel's reader and writer share: the ref and URL, the end's loop, and one socket
opened on first use."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, TypeVar

from websockets.asyncio.client import ClientConnection

from iii_rx.channels._affinity import LoopAffinity
from iii_rx.channels._socket import open_socket
from iii_rx.channels.errors import ChannelClosedError
from iii_rx.channels.url import build_channel_url
from iii_rx.protocol import StreamChannelRef
from iii_rx.telemetry.hooks import CHANNELS

__all__ = ["ChannelEnd", "EndsWithBlock", "abort_reason"]


class ChannelEnd:
    """Base of :class:`ChannelReader` and :class:`ChannelWriter`.

    The websocket is opened once, by the first operation that needs it; concurrent first
    operations share that opening, and one that fails lets the next try again.
    """

    def __init__(
        self,
        engine_url: str,
        ref: StreamChannelRef | Mapping[str, Any],
        headers: Mapping[str, str] | None,
        direction: Literal["read", "write"],
        *,
        open_timeout: float,
        max_queue: int | None,
    ) -> None:
        self.ref = ref if isinstance(ref, StreamChannelRef) else StreamChannelRef(**ref)
        self.url = build_channel_url(engine_url, self.ref.channel_id, self.ref.access_key,
                                     direction)
        self._headers = dict(headers or {})
        self._open_timeout = open_timeout
        self._max_queue = max_queue
        self._affinity = LoopAffinity()
        self._ws: ClientConnection | None = None
        self._opening: asyncio.Task[ClientConnection] | None = None
        self._direction = direction
        self.transfer: Any = None
        """The transfer's span and byte counts when OpenTelemetry is on (telemetry)."""

    @property
    def channel_id(self) -> str:
        return self.ref.channel_id

    async def _open(self) -> ClientConnection:
        """The end's socket, opening it if no operation has yet (on the end's loop)."""
        if self._opening is None:
            if CHANNELS[0] is not None and self.transfer is None:
                self.transfer = CHANNELS[0].start(self.ref.channel_id, self._direction)
            self._opening = asyncio.get_running_loop().create_task(
                open_socket(self.url, self._headers, open_timeout=self._open_timeout,
                            max_queue=self._max_queue)
            )
        try:
            ws = await asyncio.shield(self._opening)
        except ChannelClosedError as exc:
            self._opening = None
            self._end_transfer(exc)
            raise
        self._ws = ws
        return ws

    def _end_transfer(self, error: BaseException | str | None) -> None:
        """The transfer is over (closed, or failed with ``error``): its span ends."""
        if self.transfer is not None:
            self.transfer.end(error)
            self.transfer = None

    def _opened(self) -> ClientConnection | None:
        """The end's socket if one is open, also one whose opener was cancelled meanwhile
        (the opening is shielded, so it completes anyway and must not be left unclosed)."""
        opening = self._opening
        if (self._ws is None and opening is not None and opening.done()
                and not opening.cancelled() and opening.exception() is None):
            self._ws = opening.result()
        return self._ws


def abort_reason(exc_type: type[BaseException] | None) -> str:
    """The close reason of a writer ended by an exception leaving its ``with`` block."""
    return f"writer failed: {exc_type.__name__ if exc_type else 'error'}"


_W = TypeVar("_W", bound="EndsWithBlock")


class EndsWithBlock:
    """``async with`` a writer: a block that finishes closes the stream cleanly, one that
    raises aborts it (the reader then sees a failed stream, not a clean end)."""

    async def close(self) -> None:
        raise NotImplementedError

    async def abort(self, reason: str = "writer failed") -> None:
        raise NotImplementedError

    async def __aenter__(self: _W) -> _W:
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
            await self.abort(abort_reason(exc_type))
