"""Channel hub of the embedded engine (docs/protocol.md §7).

A channel is a one-way pipe of websocket frames between exactly one writer and one reader,
each a websocket on ``/ws/channels/{id}?key=..&dir=..`` or an end held by the engine itself
(:meth:`ChannelHub.local_reader`, :meth:`ChannelHub.local_writer`, used by the REST API for
request bodies and streamed responses).

Flow control is end to end: the pipe holds at most ``buffer_size`` frames and
``channel_buffer_bytes`` bytes; when it is full the writer's pump stops reading the writer's
socket, websockets stops reading the TCP stream once its own queue of a few frames fills, and
the writer's ``send`` blocks. A reader that connects late gets everything queued, in order.
Text and binary frames keep their type and order.

How a channel ends (close codes seen by the websocket peers):

- writer closes cleanly (close code 1000/1001) -> the reader gets the rest of the frames, then
  a 1000 close: the clean end of stream;
- writer's connection is lost, or it closes with an error code -> the reader gets the rest of
  the frames, then a 1011 close. (The Rust engine closes the reader normally here, so readers
  cannot rely on this; iii_rx readers raise on it, other readers see a normal end.)
- reader goes away before the end -> the writer is closed with 1011 at its next frame (an
  iii_rx writer's ``close()`` does not raise for it); a writer that stays idle keeps the
  channel until the sweep (below) or its creator leaves, which count a reader that left as
  gone;
- a second socket for a side already taken -> closed at once with 1008;
- the sweep removes channels older than ``max_age_s`` with a side that never connected (or a
  reader that left): a waiting reader and a writer get 1011 (a waiting reader must not read
  an empty stream as complete; the Rust engine closes it with 1000);
- the worker that created a channel leaves (:meth:`ChannelHub.release_owner`) -> a channel
  no side attached to, or whose reader left, is removed (a writer gets 1011); one with a
  reader waiting for its writer, or a writer waiting for its reader, stays for them (until
  the sweep), as on the Rust engine, so a creator's reconnect does not end its transfers;
- engine shutdown (:meth:`ChannelHub.close`) -> every attached socket gets 1001.

The package is split by concept: :mod:`.pipe` (the bounded pipe and a channel's record),
:mod:`.sockets` (websocket ends), :mod:`.local` (the engine's own ends) and :mod:`.hub`
(creation, attachment, sweep).
"""

from __future__ import annotations

from iii_rx.engine.channels.hub import (
    CHANNEL_LIMIT,
    DEFAULT_BUFFER_BYTES,
    DEFAULT_BUFFER_SIZE,
    DEFAULT_MAX_PER_OWNER,
    MAX_BUFFER_SIZE,
    ChannelHub,
    ChannelUnavailable,
    Direction,
)
from iii_rx.engine.channels.local import FRAME_SIZE, LocalChannelReader, LocalChannelWriter

__all__ = [
    "CHANNEL_LIMIT",
    "DEFAULT_BUFFER_BYTES",
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_MAX_PER_OWNER",
    "FRAME_SIZE",
    "MAX_BUFFER_SIZE",
    "ChannelHub",
    "ChannelUnavailable",
    "Direction",
    "LocalChannelReader",
    "LocalChannelWriter",
]
