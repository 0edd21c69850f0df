"""The websocket ends of a channel: a writer's socket pumped into the pipe, the pipe pumped
into a reader's socket."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from iii_rx.engine.channels.pipe import (
    GOING_AWAY,
    INTERNAL,
    NORMAL,
    Pipe,
    ReaderGone,
    WriterLost,
    stop,
)

__all__ = ["serve_reader", "serve_writer"]

log = logging.getLogger("iii_rx.engine.channels")


async def serve_writer(pipe: Pipe, ws: ServerConnection, channel_id: str) -> None:
    """Move the frames of a writer's socket into ``pipe`` until the socket ends, then end it."""
    # Wakes a put() blocked on a full pipe when the writer's connection goes away.
    lost = asyncio.ensure_future(ws.wait_closed())
    try:
        # While put() waits for space nothing reads the socket: TCP backpressure.
        async for frame in ws:
            await pipe.put(frame, lost, lambda: not _writer_closed_cleanly(ws))
    except ReaderGone:
        code, reason = pipe.gone or (INTERNAL, "channel reader went away")
        # Reading was paused by backpressure: drain the socket so the close handshake
        # (the writer's answering close frame) gets through without waiting for a timeout.
        drain = asyncio.ensure_future(_discard(ws))
        try:
            await ws.close(code, reason)
        finally:
            await stop(drain)
        return
    except (ConnectionClosed, WriterLost) as exc:
        log.debug("channel %s: writer connection lost (%r)", channel_id, exc)
        said = ws.protocol.close_rcvd  # an abort(reason): the reader learns the reason
        pipe.finish(INTERNAL, said.reason if said is not None and said.reason
                    else "channel writer disconnected before closing")
        return
    finally:
        await stop(lost)
    if _writer_closed_cleanly(ws):
        pipe.finish(NORMAL, "")
    else:
        pipe.finish(INTERNAL, f"channel writer closed with code {ws.close_code}")


async def serve_reader(pipe: Pipe, ws: ServerConnection, channel_id: str) -> None:
    """Send the frames of ``pipe`` to a reader's socket, then close it with the pipe's end."""
    # Readers send nothing useful. Reading their socket notices a reader that leaves while
    # the pipe is idle, and keeps control frames from being stuck behind unread data.
    watch = asyncio.get_running_loop().create_task(
        _watch_reader(ws, pipe), name=f"iii-rx-channel-reader-{channel_id}"
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
        await stop(watch)


def _writer_closed_cleanly(ws: ServerConnection) -> bool:
    """Whether the writer ended the stream itself with a normal close (1000 or 1001).

    A close that the engine started (shutdown) or a connection dropped without a close frame
    is not a clean end. Frames that arrived before a clean close are still delivered.
    """
    protocol = ws.protocol
    received = protocol.close_rcvd
    return (received is not None and received.code in (NORMAL, GOING_AWAY)
            and protocol.close_rcvd_then_sent is not False)


async def _discard(ws: ServerConnection) -> None:
    """Read and drop frames until the socket closes."""
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass


async def _watch_reader(ws: ServerConnection, pipe: Pipe) -> None:
    """Read (and drop) whatever a reader sends until its socket closes; then it is gone."""
    await _discard(ws)
    if not pipe.delivered:
        pipe.consumer_gone(INTERNAL, "channel reader went away")
