"""Opening a channel websocket, and what its close codes mean."""

from __future__ import annotations

from collections.abc import Mapping

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from iii_rx.channels.errors import ChannelClosedError

__all__ = ["CLEAN_CLOSE_CODES", "FRAME_SIZE", "MAX_MESSAGE", "closed_error", "open_socket"]

FRAME_SIZE = 64 * 1024
"""Writers split data into binary frames of this size (as the official SDKs do)."""

MAX_MESSAGE = 64 * 1024 * 1024
"""Largest message a reader accepts: the engine's own message limit."""

CLEAN_CLOSE_CODES = frozenset({1000, 1005})
"""Close codes that mean "the writer finished". 1005 (no status) is what a bare close frame
reads as; 1001 is excluded on purpose: our engine sends it when it shuts down mid-stream."""


async def open_socket(
    url: str, headers: Mapping[str, str], *, open_timeout: float, max_queue: int | None = 16
) -> ClientConnection:
    """Connect one channel end.

    No compression (the Rust engine does not negotiate permessage-deflate, and on loopback it
    costs more CPU than it saves) and no keepalive pings: while backpressure pauses reading,
    pongs cannot be read either, and a slow consumer would be mistaken for a dead peer (nor
    does the Rust engine answer pings on a reader's socket).
    ``max_queue`` bounds the frames websockets buffers before it stops reading the socket.
    """
    try:
        return await connect(
            url,
            additional_headers=dict(headers) or None,
            compression=None,
            max_size=MAX_MESSAGE,
            max_queue=max_queue,
            ping_interval=None,
            open_timeout=open_timeout,
            user_agent_header=None,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        what = "not found (unknown id or wrong key)" if status == 404 else f"refused ({status})"
        raise ChannelClosedError(f"channel {what}: {url.split('?')[0]}") from exc
    except OSError as exc:
        raise ChannelClosedError(f"cannot reach the engine for channel {url.split('?')[0]}: "
                                 f"{exc}") from exc


def closed_error(exc: ConnectionClosed, what: str) -> ChannelClosedError:
    """A :class:`ChannelClosedError` describing how the connection ended."""
    frame = exc.rcvd
    if frame is None:
        return ChannelClosedError(f"{what}: the connection was lost without a close frame")
    reason = f" ({frame.reason})" if frame.reason else ""
    return ChannelClosedError(
        f"{what}: closed with code {frame.code}{reason}", code=frame.code, reason=frame.reason
    )
